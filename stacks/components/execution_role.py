"""The role the SageMaker pipeline and its jobs run as, with nothing beyond what the configured run needs.

Resources a run creates (endpoints, endpoint configs, models, training jobs) are named
`<resource prefix><base>-<execution>` (`step_code.contract.naming.run_scoped_name`), so the role may
touch exactly the names starting with the environment's prefix. Everything else is named outright:
the environment's buckets and key, the step image repository, the configured model package groups,
Bedrock models and existing endpoints, and the AWS-owned JumpStart buckets and container registries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import CfnElement, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from stacks import model_access
from stacks.components.service_trust import trusted_service
from step_code.contract.config import Config
from step_code.contract.job_env import Vpc
from step_code.contract.locations import S3_SCHEME
from step_code.contract.naming import deployed_pipeline_name

SAGEMAKER_SERVICE = "sagemaker.amazonaws.com"
# SageMaker Pipelines names the processing jobs it starts `pipelines-<execution id>-<step>-<token>`, for every
# pipeline of the account alike; it tags each with the ARN of the execution that started it.
PIPELINE_JOB_PREFIX = "pipelines-"
PIPELINE_EXECUTION_TAG = "sagemaker:pipeline-execution-arn"
# Jobs log into one group per job type; an endpoint into its own group, `ENDPOINT_LOG_GROUP_PREFIX<endpoint name>`.
SAGEMAKER_JOB_LOG_GROUPS = ("/aws/sagemaker/ProcessingJobs", "/aws/sagemaker/TrainingJobs")
ENDPOINT_LOG_GROUP_PREFIX = "/aws/sagemaker/Endpoints/"
# Endpoints and jobs publish their instance metrics under these CloudWatch namespaces.
SAGEMAKER_METRIC_NAMESPACE_PATTERN = "/aws/sagemaker/*"
ECR_PULL_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
# What SageMaker does as the role to put a job's or model's network interfaces into the configured subnets.
ENI_MANAGE_ACTIONS = [
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterface",
    "ec2:DeleteNetworkInterfacePermission",
]
# EC2's Describe* actions have no resource-level permissions.
VPC_DESCRIBE_ACTIONS = [
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
]
KEY_USE_ACTIONS = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]


@dataclass(frozen=True)
class StepCodeObject:
    """Where the step code bundle lives (the CDK file asset)."""

    bucket_name: str
    object_key: str


@dataclass(frozen=True)
class NagAcknowledgement:
    """cdk-nag IAM5 wildcard findings acknowledged for one policy, with why the wildcard is needed."""

    reason: str
    applies_to: list[str | RegexAppliesTo]


def _regex(pattern: str) -> RegexAppliesTo:
    return RegexAppliesTo(regex=f"/{pattern}/")


def _nag_arn(bucket: s3.IBucket) -> str:
    """How cdk-nag writes the ARN of a bucket defined in another stack: `<LogicalId.Arn>`."""
    resource = bucket.node.default_child
    if not isinstance(resource, CfnElement):
        raise TypeError(f"{bucket.node.path} is not a bucket defined in this app")
    return f"<{Stack.of(resource).get_logical_id(resource)}.Arn>"


class EvaluationExecutionRole(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        resource_prefix: str,
        key: kms.IKey,
        data_bucket: s3.IBucket,
        catalog_prefix: str,
        artifacts_bucket: s3.IBucket,
        step_code: StepCodeObject,
        image_repository: ecr.IRepository,
        model_package_groups: Sequence[str],
        vpcs: Sequence[Vpc] = (),
        extra_key_arns: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self._partition, self._region, self._account = stack.partition, stack.region, stack.account
        self._prefix = resource_prefix
        self._pipeline_name = deployed_pipeline_name(resource_prefix, config.pipeline.name)
        self.role = iam.Role(
            self,
            "Role",
            role_name=f"{resource_prefix}sagemaker-execution",
            # SageMaker assumes it for the pipeline, its jobs and the endpoints: all this account's, in this region.
            assumed_by=trusted_service(
                SAGEMAKER_SERVICE,
                account=self._account,
                source_arn=f"arn:{self._partition}:sagemaker:{self._region}:{self._account}:*",
            ),
            description=f"Runs the {resource_prefix}* evaluation pipeline, its jobs and the models it deploys",
        )
        self._attach(
            "DataAccess",
            "Reads the catalog and step code, writes run artifacts, logs and metrics, uses the environment's key",
            [
                *self._bucket_statements(data_bucket, catalog_prefix, artifacts_bucket, step_code),
                *self._external_read_statements(config),
                *self._key_statements([key.key_arn, *extra_key_arns]),
                self._log_statement(),
                self._metric_statement(),
            ],
            [
                NagAcknowledgement(
                    "Object reads are limited to the prompt catalog prefix of the environment's data bucket.",
                    [f"Resource::{_nag_arn(data_bucket)}/{catalog_prefix}*"],
                ),
                NagAcknowledgement(
                    "The environment's artifacts bucket holds only this pipeline's config, definition, run outputs, "
                    "model artifacts and response cache.",
                    [f"Resource::{_nag_arn(artifacts_bucket)}/*"],
                ),
                NagAcknowledgement(
                    "SageMaker names one log stream per job instance inside these fixed log groups.",
                    [_regex(r"^Resource::arn:[^:]+:logs:[^:]+:.+:log-group:\/aws\/sagemaker\/[A-Za-z]+:\*$")],
                ),
                NagAcknowledgement(
                    "Each endpoint the pipeline deploys logs into a group named after it; the environment prefix is "
                    "the fixed part of those names.",
                    [_regex(rf":log-group:\/aws\/sagemaker\/Endpoints\/{resource_prefix}\*$")],
                ),
                NagAcknowledgement(
                    "cloudwatch:PutMetricData has no resource-level permissions; a condition keeps it to SageMaker's "
                    "namespaces.",
                    ["Resource::*"],
                ),
                NagAcknowledgement(
                    "s3:// inputs named by the config are read below the prefixes it gives.",
                    [f"Resource::{arn}" for arn in self._external_object_arns(config)],
                ),
            ],
        )
        self._attach(
            "Orchestration",
            "Lets the pipeline start its processing jobs and pass this role to SageMaker",
            [
                *self._processing_job_statements(),
                self._pass_role_statement(),
                *self._image_pull_statements(config, image_repository),
            ],
            [
                NagAcknowledgement(
                    "Pipeline job names carry the execution id and a random token, so only the pipelines- prefix is "
                    "fixed; stopping or tagging a job also needs this pipeline's execution tag on it.",
                    [_regex(r":processing-job\/pipelines-\*$")],
                ),
                NagAcknowledgement(
                    "ecr:GetAuthorizationToken has no resource-level permissions; image pulls name repositories.",
                    ["Resource::*"],
                ),
                NagAcknowledgement(
                    "AWS deep learning containers are pulled from the AWS-owned registries of this region only.",
                    [_regex(r"^Resource::arn:[^:]+:ecr:[^:]+:\d{12}:repository\/\*$")],
                ),
            ],
        )
        self._attach(
            "ModelResources",
            "Creates, invokes and deletes the run's own endpoints, models and training jobs; registers the winner",
            [
                *self._run_resource_statements(),
                self._registry_statement(model_package_groups),
                self._model_card_statement(model_package_groups),
                self._list_statement(),
            ],
            [
                NagAcknowledgement(
                    "Endpoint, model and training job names vary per run or per deployment; the environment prefix is "
                    "their fixed part.",
                    [_regex(rf":(model|endpoint-config|endpoint|training-job)\/{resource_prefix}\*$")],
                ),
                NagAcknowledgement(
                    "SageMaker numbers the model package versions inside the configured groups.",
                    [_regex(r":model-package\/[^/]+\/\*$")],
                ),
                NagAcknowledgement(
                    "ListEndpoints, ListModelPackages and ListTrainingJobs have no resource-level permissions.",
                    ["Resource::*"],
                ),
                NagAcknowledgement(
                    "A winner's model card is named after its group and the version SageMaker numbers (model_card.py).",
                    [_regex(r":model-card\/[^/]+-v\*$")],
                ),
            ],
        )
        if vpcs:
            self._attach(
                "VpcNetworkInterfaces",
                "Lets SageMaker put the network interfaces of jobs and models into the environment's subnets",
                self._vpc_statements(vpcs),
                [
                    NagAcknowledgement(
                        "SageMaker names the network interfaces it creates; conditions keep them to the configured "
                        "subnets.",
                        [_regex(r":network-interface\/\*$")],
                    ),
                    NagAcknowledgement("EC2's Describe actions have no resource-level permissions.", ["Resource::*"]),
                ],
            )
        model_statements = self._model_access_statements(config)
        if model_statements:
            self._attach(
                "ModelAccess",
                "Invokes the configured Bedrock models and existing endpoints; reads JumpStart artifacts",
                model_statements,
                [
                    NagAcknowledgement(
                        "JumpStart model artifacts and scripts are spread over keys of these AWS-owned buckets.",
                        [
                            f"Resource::arn:{self._partition}:s3:::{name}/*"
                            for name in model_access.jumpstart_buckets(self._region)
                        ],
                    ),
                    NagAcknowledgement(
                        "A cross-region inference profile routes to its base model in any region of its geography.",
                        [_regex(r"^Resource::arn:[^:]+:bedrock:\*::foundation-model\/")],
                    ),
                    NagAcknowledgement(
                        "An existing endpoint's config name is only known from DescribeEndpoint at run time; "
                        "this read-only action gives the cost estimate its instance type.",
                        [_regex(r":endpoint-config\/\*$")],
                    ),
                    NagAcknowledgement(
                        "The models behind an existing endpoint are only named by its config at run time; this "
                        "read-only action lets the response cache tell a swapped model from the one it cached.",
                        [_regex(r":model\/\*$")],
                    ),
                ],
            )

    def _arn(self, service: str, resource: str, *, region: str | None = None, account: str | None = None) -> str:
        region = self._region if region is None else region
        account = self._account if account is None else account
        return f"arn:{self._partition}:{service}:{region}:{account}:{resource}"

    def _sagemaker_arn(self, resource_type: str, name: str) -> str:
        # SageMaker puts names into ARNs in lower case; IAM compares ARNs case-sensitively.
        return self._arn("sagemaker", f"{resource_type}/{name.lower()}")

    def _attach(
        self,
        policy_id: str,
        description: str,
        statements: list[iam.PolicyStatement],
        findings: list[NagAcknowledgement],
    ) -> None:
        # Managed policies (6,144 characters each) rather than inline ones (10,240 for the whole role):
        # a config with many Bedrock models or endpoints must still fit.
        policy = iam.ManagedPolicy(self, policy_id, description=description, statements=statements, roles=[self.role])
        NagSuppressions.add_resource_suppressions(
            policy,
            [
                NagPackSuppression(id="AwsSolutions-IAM5", reason=finding.reason, applies_to=finding.applies_to)
                for finding in findings
                if finding.applies_to
            ],
        )

    def _bucket_statements(
        self, data_bucket: s3.IBucket, catalog_prefix: str, artifacts_bucket: s3.IBucket, step_code: StepCodeObject
    ) -> list[iam.PolicyStatement]:
        code_bucket_arn = f"arn:{self._partition}:s3:::{step_code.bucket_name}"
        return [
            iam.PolicyStatement(
                sid="ReadPromptCatalog",
                actions=["s3:GetObject"],
                resources=[data_bucket.arn_for_objects(f"{catalog_prefix}*")],
            ),
            iam.PolicyStatement(
                sid="ListPromptCatalog",
                actions=["s3:ListBucket"],
                resources=[data_bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{catalog_prefix}*"]}},
            ),
            iam.PolicyStatement(
                sid="ReadWriteArtifacts",
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                resources=[artifacts_bucket.arn_for_objects("*")],
            ),
            iam.PolicyStatement(
                sid="ListArtifacts",
                actions=["s3:ListBucket", "s3:GetBucketLocation"],
                resources=[artifacts_bucket.bucket_arn],
            ),
            iam.PolicyStatement(
                sid="ReadStepCode",
                actions=["s3:GetObject"],
                resources=[f"{code_bucket_arn}/{step_code.object_key}"],
            ),
            iam.PolicyStatement(
                sid="ListStepCode",
                actions=["s3:ListBucket"],
                resources=[code_bucket_arn],
                conditions={"StringEquals": {"s3:prefix": [step_code.object_key]}},
            ),
        ]

    def _external_locations(self, config: Config) -> dict[str, list[str]]:
        """Bucket -> key prefixes of the s3:// inputs the config names."""
        locations: dict[str, list[str]] = {}
        for uri in model_access.external_s3_uris(config):
            bucket, _, key = uri.removeprefix(S3_SCHEME).partition("/")
            locations.setdefault(bucket, []).append(key)
        return locations

    def _external_object_arns(self, config: Config) -> list[str]:
        return [
            f"arn:{self._partition}:s3:::{bucket}/{key}*"
            for bucket, keys in self._external_locations(config).items()
            for key in keys
        ]

    def _external_read_statements(self, config: Config) -> list[iam.PolicyStatement]:
        """Read access to s3:// inputs the config names outside the environment's buckets."""
        locations = self._external_locations(config)
        if not locations:
            return []
        return [
            iam.PolicyStatement(
                sid="ReadConfiguredInputs", actions=["s3:GetObject"], resources=self._external_object_arns(config)
            ),
            *(
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[f"arn:{self._partition}:s3:::{bucket}"],
                    conditions={"StringLike": {"s3:prefix": [f"{key}*" for key in keys]}},
                )
                for bucket, keys in locations.items()
            ),
        ]

    def _key_statements(self, key_arns: list[str]) -> list[iam.PolicyStatement]:
        return [
            iam.PolicyStatement(sid="UseEnvironmentKey", actions=KEY_USE_ACTIONS, resources=key_arns),
            iam.PolicyStatement(
                sid="GrantKeyToSageMakerVolumes",
                actions=["kms:CreateGrant"],
                resources=key_arns,
                # SageMaker encrypts job volumes and endpoint storage with the key through grants; nobody else.
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            ),
        ]

    def _vpc_statements(self, vpcs: Sequence[Vpc]) -> list[iam.PolicyStatement]:
        subnets = sorted({subnet for vpc in vpcs for subnet in vpc.subnets})
        groups = sorted({group for vpc in vpcs for group in vpc.security_group_ids})
        subnet_arns = [self._arn("ec2", f"subnet/{subnet}") for subnet in subnets]
        in_subnets = {"ArnEquals": {"ec2:Subnet": subnet_arns}}
        interfaces = self._arn("ec2", "network-interface/*")
        return [
            # CreateNetworkInterface is authorized on the subnet, the security groups and the new interface;
            # the first two are named, the interface (whose id is not known yet) must be in those subnets.
            iam.PolicyStatement(
                sid="CreateInterfacesInConfiguredSubnets",
                actions=["ec2:CreateNetworkInterface"],
                resources=[*subnet_arns, *(self._arn("ec2", f"security-group/{group}") for group in groups)],
            ),
            iam.PolicyStatement(
                sid="CreateInterfaces",
                actions=["ec2:CreateNetworkInterface"],
                resources=[interfaces],
                conditions=in_subnets,
            ),
            iam.PolicyStatement(
                sid="ManageInterfacesInConfiguredSubnets",
                actions=ENI_MANAGE_ACTIONS,
                resources=[interfaces],
                conditions=in_subnets,
            ),
            iam.PolicyStatement(sid="DescribeNetwork", actions=VPC_DESCRIBE_ACTIONS, resources=["*"]),
        ]

    def _log_statement(self) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            sid="WriteSageMakerLogs",
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[
                *(self._arn("logs", f"log-group:{group}:*") for group in SAGEMAKER_JOB_LOG_GROUPS),
                # The trailing `*` also covers the group's streams (`<group>:log-stream:<stream>`).
                self._arn("logs", f"log-group:{ENDPOINT_LOG_GROUP_PREFIX}{self._prefix}*"),
            ],
        )

    def _metric_statement(self) -> iam.PolicyStatement:
        # Part of SageMaker's documented execution-role permissions: endpoints and jobs publish metrics as the role.
        return iam.PolicyStatement(
            sid="PutSageMakerMetrics",
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": SAGEMAKER_METRIC_NAMESPACE_PATTERN}},
        )

    def _processing_job_statements(self) -> list[iam.PolicyStatement]:
        jobs = self._sagemaker_arn("processing-job", f"{PIPELINE_JOB_PREFIX}*")
        # Execution ARNs carry the pipeline name in lower case, like every SageMaker ARN; the name as
        # configured is matched too, so the tag's spelling cannot keep the pipeline from stopping its jobs.
        own_executions = sorted(
            {
                self._sagemaker_arn("pipeline", f"{self._pipeline_name}/execution/*"),
                self._arn("sagemaker", f"pipeline/{self._pipeline_name}/execution/*"),
            }
        )
        tag = PIPELINE_EXECUTION_TAG
        return [
            iam.PolicyStatement(
                # Creating starts a new job; describing reads one. Neither touches another pipeline's runs.
                sid="RunPipelineJobs",
                actions=["sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob"],
                resources=[jobs],
            ),
            iam.PolicyStatement(
                # Every pipeline's jobs match `pipelines-*`: only the tag tells this pipeline's apart.
                sid="ControlOwnPipelineJobs",
                actions=["sagemaker:StopProcessingJob", "sagemaker:AddTags"],
                resources=[jobs],
                conditions={"StringLike": {f"aws:ResourceTag/{tag}": own_executions}},
            ),
            iam.PolicyStatement(
                # Tags given to CreateProcessingJob are authorized before the job exists, so before it carries the
                # execution tag; a job that carries one (any pipeline's) is left to the statement above.
                sid="TagNewPipelineJobs",
                actions=["sagemaker:AddTags"],
                resources=[jobs],
                conditions={"Null": {f"aws:ResourceTag/{tag}": "true"}},
            ),
        ]

    def _pass_role_statement(self) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            sid="PassSelfToSageMaker",
            actions=["iam:PassRole"],
            resources=[self.role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": SAGEMAKER_SERVICE}},
        )

    def _image_pull_statements(self, config: Config, repository: ecr.IRepository) -> list[iam.PolicyStatement]:
        repositories = [repository.repository_arn]
        if model_access.deploys_containers(config) or model_access.redeploys_champion(config):
            repositories += [
                self._arn("ecr", "repository/*", account=account)
                for account in model_access.dlc_registry_accounts(self._region)
            ]
        return [
            iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
            iam.PolicyStatement(sid="PullImages", actions=ECR_PULL_ACTIONS, resources=repositories),
        ]

    def _run_resource_statements(self) -> list[iam.PolicyStatement]:
        prefix = f"{self._prefix}*"
        return [
            iam.PolicyStatement(
                sid="ManageRunEndpoints",
                actions=[
                    "sagemaker:CreateModel",
                    "sagemaker:CreateEndpointConfig",
                    "sagemaker:CreateEndpoint",
                    "sagemaker:DescribeModel",
                    "sagemaker:DescribeEndpointConfig",
                    "sagemaker:DescribeEndpoint",
                    "sagemaker:InvokeEndpoint",
                    "sagemaker:DeleteModel",
                    "sagemaker:DeleteEndpointConfig",
                    "sagemaker:DeleteEndpoint",
                    "sagemaker:AddTags",
                    "sagemaker:ListTags",
                ],
                resources=[self._sagemaker_arn(kind, prefix) for kind in ("model", "endpoint-config", "endpoint")],
            ),
            # Warm pools need nothing more: KeepAlivePeriodInSeconds is part of CreateTrainingJob, and the
            # steps never change or end a pool (UpdateTrainingJob), so that action is not granted.
            iam.PolicyStatement(
                sid="ManageRunTrainingJobs",
                actions=[
                    "sagemaker:CreateTrainingJob",
                    "sagemaker:DescribeTrainingJob",
                    "sagemaker:StopTrainingJob",
                    "sagemaker:AddTags",
                    "sagemaker:ListTags",
                ],
                resources=[self._sagemaker_arn("training-job", prefix)],
            ),
        ]

    def _registry_statement(self, groups: Sequence[str]) -> iam.PolicyStatement:
        resources: list[str] = []
        for group in groups:
            resources += [
                self._sagemaker_arn("model-package-group", group),
                self._sagemaker_arn("model-package", f"{group}/*"),
            ]
        return iam.PolicyStatement(
            sid="RegisterWinners",
            actions=[
                "sagemaker:CreateModelPackage",
                "sagemaker:DescribeModelPackage",
                "sagemaker:UpdateModelPackage",
                "sagemaker:DescribeModelPackageGroup",
                "sagemaker:AddTags",
                "sagemaker:ListTags",
            ],
            resources=resources,
        )

    def _model_card_statement(self, groups: Sequence[str]) -> iam.PolicyStatement:
        # The register step creates or updates `<group>-v<version>` (step_code/model_card.py).
        return iam.PolicyStatement(
            sid="WriteModelCards",
            actions=["sagemaker:CreateModelCard", "sagemaker:DescribeModelCard", "sagemaker:UpdateModelCard"],
            resources=[self._sagemaker_arn("model-card", f"{group}-v*") for group in groups],
        )

    def _list_statement(self) -> iam.PolicyStatement:
        # ListModelPackages: the champion step finds the approved champion (step_code/champion.py).
        # ListTrainingJobs: a fine-tuning finds the earlier run's job trained from the same inputs (finetune.py).
        return iam.PolicyStatement(
            sid="ListWithoutResourceLevelPermissions",
            actions=["sagemaker:ListEndpoints", "sagemaker:ListModelPackages", "sagemaker:ListTrainingJobs"],
            resources=["*"],
        )

    def _model_access_statements(self, config: Config) -> list[iam.PolicyStatement]:
        statements: list[iam.PolicyStatement] = []
        bedrock = [
            arn
            for model_id in model_access.bedrock_model_ids(config)
            for arn in model_access.bedrock_model_arns(
                model_id, partition=self._partition, region=self._region, account=self._account
            )
        ]
        if bedrock:
            statements.append(
                iam.PolicyStatement(sid="InvokeBedrockModels", actions=["bedrock:InvokeModel"], resources=bedrock)
            )
        endpoints = model_access.existing_endpoint_names(config)
        if endpoints:
            statements += [
                iam.PolicyStatement(
                    sid="InvokeExistingEndpoints",
                    # The cost estimate reads the endpoint's instances (step_code/run_cost.py).
                    actions=["sagemaker:InvokeEndpoint", "sagemaker:DescribeEndpoint"],
                    resources=[self._sagemaker_arn("endpoint", name) for name in endpoints],
                ),
                iam.PolicyStatement(
                    sid="DescribeExistingEndpointConfigs",
                    actions=["sagemaker:DescribeEndpointConfig"],
                    resources=[self._sagemaker_arn("endpoint-config", "*")],
                ),
                # The response cache is keyed by the image and weights an existing endpoint serves
                # (step_code/answering_identity.py).
                iam.PolicyStatement(
                    sid="DescribeExistingEndpointModels",
                    actions=["sagemaker:DescribeModel"],
                    resources=[self._sagemaker_arn("model", "*")],
                ),
            ]
        if model_access.deploys_jumpstart(config) or model_access.redeploys_champion(config):
            buckets = [f"arn:{self._partition}:s3:::{name}" for name in model_access.jumpstart_buckets(self._region)]
            statements += [
                iam.PolicyStatement(
                    sid="ReadJumpStartArtifacts", actions=["s3:GetObject"], resources=[f"{b}/*" for b in buckets]
                ),
                iam.PolicyStatement(sid="ListJumpStartArtifacts", actions=["s3:ListBucket"], resources=buckets),
            ]
        return statements
