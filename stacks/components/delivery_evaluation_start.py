"""Starting an environment's evaluation from the delivery pipeline, across accounts.

The post-deploy CodeBuild step runs in the tooling account, but the SageMaker pipeline lives in the
environment's account. The environment's own stack therefore gets a role that (a) trusts only the step's
role in the tooling account, matched by ARN, and (b) may only start that one SageMaker pipeline. The step
assumes it through an AWS CLI profile sourced from the CodeBuild container credentials, so no key ever
appears in the build's environment. Both role names are fixed, because a cross-account policy cannot
reference a token from another account's stack.
"""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Stack, Stage, Token, pipelines
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from pipeline_definitions.loading.environments import DeliverySettings, Environment

START_ACTION_NAME = "StartEvaluation"
EXECUTION_ARN_VARIABLE = "EVALUATION_EXECUTION_ARN"
PIPELINE_NAME_VARIABLE = "EVALUATION_PIPELINE_NAME"

# CodeBuild runs a phase's commands in one shell (buildspec 0.2) and fails on the first failing one. The
# assignment stands alone because `export X=$(...)` would hide a failed call; `--region` is explicit because
# CodeBuild sets AWS_DEFAULT_REGION to the tooling region, which would win over the profile's region.
START_COMMANDS = (
    'aws configure set profile.evaluation.role_arn "$START_ROLE_ARN"',
    "aws configure set profile.evaluation.credential_source EcsContainer",
    'aws configure set profile.evaluation.role_session_name "$DELIVERY_NAME-$ENVIRONMENT_NAME"',
    f"{EXECUTION_ARN_VARIABLE}=$(aws sagemaker start-pipeline-execution"
    ' --profile evaluation --region "$TARGET_REGION"'
    f' --pipeline-name "${PIPELINE_NAME_VARIABLE}"'
    ' --pipeline-execution-display-name "delivery-$CODEPIPELINE_EXECUTION_ID"'
    ' --pipeline-execution-description "Started by $DELIVERY_NAME (CodePipeline execution $CODEPIPELINE_EXECUTION_ID)"'
    ' --client-request-token "$CODEPIPELINE_EXECUTION_ID-$ENVIRONMENT_NAME"'
    " --query PipelineExecutionArn --output text)",
    f"export {EXECUTION_ARN_VARIABLE}",
    f'echo "Started SageMaker pipeline execution ${EXECUTION_ARN_VARIABLE}"',
)


def start_namespace(stage_name: str) -> str:
    """CodePipeline variables namespace of a stage's start action: `#{<namespace>.EVALUATION_EXECUTION_ARN}`."""
    return f"{stage_name}-{START_ACTION_NAME}"


def start_role_name(environment: Environment) -> str:
    """The role in the environment's account that the delivery pipeline assumes (≤ 47 characters)."""
    return f"{environment.resource_prefix}delivery-start"


def caller_role_name(delivery: DeliverySettings, environment: Environment) -> str:
    """The post-deploy step's CodeBuild role in the tooling account (≤ 59 characters)."""
    return f"{delivery.name}-{environment.name}-start-eval"


def find_evaluation_pipeline(stage: Stage) -> sagemaker.CfnPipeline:
    """The one SageMaker pipeline an evaluation Stage deploys."""
    found = [child for child in stage.node.find_all() if isinstance(child, sagemaker.CfnPipeline)]
    if len(found) != 1:
        raise ValueError(
            f"stage {stage.node.id!r} must define exactly one SageMaker pipeline for the delivery pipeline to start, "
            f"found {len(found)}"
        )
    return found[0]


class EvaluationStartAccess(Construct):
    """In the environment's stack: the role the delivery pipeline assumes, and the pipeline name as an output."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        pipeline: sagemaker.CfnPipeline,
        role_name: str,
        caller_role_arn: str,
        tooling_account: str,
    ) -> None:
        super().__init__(scope, construct_id)
        name = pipeline.pipeline_name
        # SageMaker writes pipeline names in lower case in their ARNs, and IAM compares ARNs case-sensitively.
        arn_name = name if Token.is_unresolved(name) else name.lower()
        pipeline_arn = Stack.of(self).format_arn(service="sagemaker", resource="pipeline", resource_name=arn_name)
        self.role = iam.Role(
            self,
            "Role",
            role_name=role_name,
            description="Lets the delivery pipeline start this environment's evaluation, and nothing else.",
            assumed_by=iam.AccountPrincipal(tooling_account).with_conditions(
                {"ArnEquals": {"aws:PrincipalArn": caller_role_arn}}
            ),
            inline_policies={
                "StartEvaluation": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(actions=["sagemaker:StartPipelineExecution"], resources=[pipeline_arn])
                    ]
                )
            },
        )
        self.pipeline_name_output = CfnOutput(
            self, "PipelineName", value=name, description="SageMaker pipeline the delivery pipeline starts."
        )


def add_evaluation_start(
    delivery_stack: Stack, delivery: DeliverySettings, environment: Environment, stage: Stage
) -> pipelines.CodeBuildStep:
    """Give `stage` the access role and return the post-deploy step that starts its evaluation.

    `environment` must be the delivery target (its account resolved); call before the stage is added to
    the pipeline, which synthesizes it.
    """
    if environment.account is None:
        raise ValueError(f"environment {environment.name!r} has no account; resolve it with DeliverySettings.target")
    pipeline = find_evaluation_pipeline(stage)
    caller_name = caller_role_name(delivery, environment)
    caller_arn = f"arn:{Aws.PARTITION}:iam::{delivery.account}:role/{caller_name}"
    access = EvaluationStartAccess(
        Stack.of(pipeline),
        "DeliveryEvaluationStart",
        pipeline=pipeline,
        role_name=start_role_name(environment),
        caller_role_arn=caller_arn,
        tooling_account=delivery.account,
    )
    start_role_arn = f"arn:{Aws.PARTITION}:iam::{environment.account}:role/{start_role_name(environment)}"
    caller = iam.Role(
        delivery_stack,
        f"StartEvaluationRole-{environment.name}",
        role_name=caller_name,
        description=f"Post-deploy step of {delivery.name}: starts the evaluation in {environment.name}.",
        assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
        inline_policies={
            "AssumeStartRole": iam.PolicyDocument(
                statements=[iam.PolicyStatement(actions=["sts:AssumeRole"], resources=[start_role_arn])]
            )
        },
    )
    step = pipelines.CodeBuildStep(
        START_ACTION_NAME,
        commands=list(START_COMMANDS),
        env={
            "START_ROLE_ARN": start_role_arn,
            "TARGET_REGION": environment.region,
            "ENVIRONMENT_NAME": environment.name,
            "DELIVERY_NAME": delivery.name,
            "CODEPIPELINE_EXECUTION_ID": codepipeline.GlobalVariables.EXECUTION_ID,
        },
        env_from_cfn_outputs={PIPELINE_NAME_VARIABLE: access.pipeline_name_output},
        role=caller,
        build_environment=codebuild.BuildEnvironment(compute_type=codebuild.ComputeType.SMALL),
    )
    step.exported_variable(EXECUTION_ARN_VARIABLE)
    return step
