"""Each runner against the local model server, with the payload shapes the real services use."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from step_code.contract.config import Config, ModelConfig
from step_code.invocation import PromptItem, invoke_all, render_prompt
from step_code.runners.base import ModelRunner, PermanentError, RetryableError
from step_code.runners.factory import build_runner
from step_code.runners.openai_chat import chat_completions_url
from step_code.runners.payload import RequestBody
from step_code.runners.recorded import RecordedResponsesError
from tests.support.model_server import FaultKind, ModelServer

TRICKY_PROMPT = 'Say "hi"\n\tthen \\ stop — ünïcode {braces} PROMPT'


def model(**fields: Any) -> ModelConfig:
    return ModelConfig.model_validate({"name": "candidate", **fields})


def invoke_quickly(items: list[PromptItem], runner: ModelRunner, *, concurrency: int, max_retries: int) -> Any:
    """`invoke_all` without a cache, with short timeouts and near-zero backoff between retries."""
    return invoke_all(
        items,
        runner,
        cache=None,
        concurrency=concurrency,
        max_retries=max_retries,
        timeout_seconds=5,
        backoff_base_seconds=0.001,
    )


def invoke(runner: ModelRunner, prompt: str, model_input: str | None = None) -> Any:
    return runner.invoke(prompt, model_input=model_input or prompt, timeout_seconds=5.0)


# -- SageMaker endpoints: the reference config's own models --------------------------------------------


def test_llama2_chat_template_from_reference_config(reference_config: Config, model_server: ModelServer) -> None:
    llama = reference_config.model("llama2-7b-f")
    runner = build_runner(llama, endpoint_name="run-llama2-7b-f")
    prompt = render_prompt(llama.evaluation_config.prompt_template, TRICKY_PROMPT)

    response = invoke(runner, prompt)

    assert response.text == model_server.answer(TRICKY_PROMPT)
    (request,) = model_server.requests
    assert request.route == "sagemaker-chat"
    assert request.model == "run-llama2-7b-f"
    assert request.body == {
        "inputs": [[{"role": "user", "content": TRICKY_PROMPT}]],
        "parameters": {"max_new_tokens": 100, "top_p": 0.9, "temperature": 0.6},
    }
    assert request.headers["x-amzn-sagemaker-custom-attributes"] == "accept_eula=true"
    assert request.headers["content-type"] == "application/json"


def test_falcon_tgi_template_from_reference_config(reference_config: Config, model_server: ModelServer) -> None:
    falcon = reference_config.model("falcon-7b")
    runner = build_runner(falcon, endpoint_name="run-falcon-7b")

    response = invoke(runner, TRICKY_PROMPT)

    # return_full_text=false reaches the server, so the answer does not start with the prompt.
    assert response.text == model_server.answer(TRICKY_PROMPT)
    (request,) = model_server.requests
    assert request.route == "sagemaker"
    assert request.body == {
        "inputs": TRICKY_PROMPT,
        "parameters": {"max_new_tokens": 100, "top_p": 0.8, "temperature": 0.01, "return_full_text": False},
    }
    assert "x-amzn-sagemaker-custom-attributes" not in request.headers
    assert response.input_tokens is None and response.output_tokens is None


def test_endpoint_provider_reads_log_probability(model_server: ModelServer) -> None:
    existing = model(
        model_provider="endpoint",
        endpoint_name="team-endpoint",
        evaluation_config={
            "output": "[0].generated_text",
            "log_probability": "sum([0].details.tokens[*].logprob)",
            "inference_parameters": {"details": True},
        },
    )
    response = invoke(build_runner(existing), "two words")

    assert response.text == "echo: two words"
    # The server gives every generated word a logprob of -0.5: "echo:", "two", "words".
    assert response.log_probability == pytest.approx(-1.5)
    assert model_server.requests[0].model == "team-endpoint"


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("throttle", RetryableError),
        ("error", RetryableError),
        ("timeout", RetryableError),
        ("bad_request", PermanentError),
        ("malformed", RetryableError),
        ("truncated", RetryableError),
    ],
)
def test_sagemaker_failures_are_classified(
    reference_config: Config, model_server: ModelServer, fault: FaultKind, error: type[Exception]
) -> None:
    runner = build_runner(reference_config.model("falcon-7b"), endpoint_name="ep")
    model_server.inject(fault)
    with pytest.raises(error):
        runner.invoke("q", model_input="q", timeout_seconds=0.5)


def test_output_path_that_finds_nothing_is_permanent(model_server: ModelServer) -> None:
    wrong = model(model_provider="endpoint", endpoint_name="ep", evaluation_config={"output": "[0].generation"})
    with pytest.raises(PermanentError, match=r"output path '\[0\]\.generation' found nothing"):
        invoke(build_runner(wrong), "q")


def test_deployed_model_needs_the_endpoint_from_deployment(reference_config: Config) -> None:
    with pytest.raises(ValueError, match=r"deployment\.json's endpoint_name"):
        build_runner(reference_config.model("falcon-7b"))


# -- request bodies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "parameters", "expected"),
    [
        (None, {}, {"inputs": "P"}),
        (None, {"max_new_tokens": 5}, {"inputs": "P", "parameters": {"max_new_tokens": 5}}),
        ("Q: PROMPT_PLACEHOLDER A:", {}, {"inputs": "Q: P A:"}),
        (
            {"inputs": "PROMPT_PLACEHOLDER", "parameters": {"top_p": 0.5, "max_new_tokens": 1}},
            {"max_new_tokens": 9},
            {"inputs": "P", "parameters": {"top_p": 0.5, "max_new_tokens": 9}},
        ),
        ({"inputs": "PROMPT_PLACEHOLDER"}, {"top_k": 3}, {"inputs": "P", "parameters": {"top_k": 3}}),
        ({"text_inputs": "PROMPT_PLACEHOLDER"}, {"max_length": 7}, {"text_inputs": "P", "max_length": 7}),
        ('{"prompt": PROMPT_PLACEHOLDER, "n": 1}', {}, {"prompt": "P", "n": 1}),
        ('{"prompt": "<s>PROMPT_PLACEHOLDER</s>"}', {}, {"prompt": "<s>P</s>"}),
    ],
)
def test_request_body_rules(template: Any, parameters: dict[str, Any], expected: Any) -> None:
    assert RequestBody(template, parameters).render("P") == expected


def test_json_looking_template_that_is_not_json_is_rejected() -> None:
    with pytest.raises(ValueError, match="starts like JSON but is not valid JSON"):
        RequestBody('{"inputs": "PROMPT_PLACEHOLDER",}', {})


# -- Bedrock --------------------------------------------------------------------------------------------


def test_bedrock_converse_maps_parameters_and_reports_usage(model_server: ModelServer) -> None:
    claude = model(
        model_provider="bedrock",
        model_id="anthropic.claude-3-haiku-20240307-v1:0",
        evaluation_config={
            "inference_parameters": {
                "max_new_tokens": 50,
                "temperature": 0.2,
                "top_p": 0.9,
                "top_k": 40,
                "return_full_text": False,
                "stop": "###",
            },
        },
    )
    response = invoke(build_runner(claude, region="us-east-1"), "what is two plus two")

    assert response.text == "echo: what is two plus two"
    assert (response.input_tokens, response.output_tokens) == (5, 6)
    (request,) = model_server.requests
    assert request.route == "bedrock-converse"
    assert request.model == "anthropic.claude-3-haiku-20240307-v1:0"
    assert request.body["messages"] == [{"role": "user", "content": [{"text": "what is two plus two"}]}]
    assert request.body["inferenceConfig"] == {
        "maxTokens": 50,
        "temperature": 0.2,
        "topP": 0.9,
        "stopSequences": ["###"],
    }
    assert request.body["additionalModelRequestFields"] == {"top_k": 40}


@pytest.mark.parametrize(
    ("template", "output", "route"),
    [
        (
            {
                "anthropic_version": "bedrock-2023-05-31",
                "messages": [{"role": "user", "content": "PROMPT_PLACEHOLDER"}],
            },
            "content[0].text",
            "bedrock-anthropic",
        ),
        ({"inputText": "PROMPT_PLACEHOLDER"}, "results[0].outputText", "bedrock-titan"),
        ({"prompt": "<s>[INST] PROMPT_PLACEHOLDER [/INST]"}, "generation", "bedrock-prompt"),
    ],
)
def test_bedrock_native_body_with_content_template(
    model_server: ModelServer, template: Any, output: str, route: str
) -> None:
    native = model(
        model_provider="bedrock",
        model_id="imported-model",
        evaluation_config={
            "content_template": template,
            "output": output,
            "inference_parameters": {"max_tokens": 64},
        },
    )
    response = invoke(build_runner(native), "name a color")

    (request,) = model_server.requests
    assert request.route == route
    assert request.body["max_tokens"] == 64
    assert response.text == model_server.answer(
        "<s>[INST] name a color [/INST]" if route == "bedrock-prompt" else "name a color"
    )
    assert response.input_tokens is not None and response.input_tokens >= 3
    assert response.output_tokens == len(response.text.split())


def test_bedrock_throttling_is_retryable(model_server: ModelServer) -> None:
    runner = build_runner(model(model_provider="bedrock", model_id="amazon.nova-micro-v1:0"))
    model_server.inject("throttle", "bad_request")
    with pytest.raises(RetryableError, match="ThrottlingException"):
        invoke(runner, "q")
    with pytest.raises(PermanentError, match="400"):
        invoke(runner, "q")


# -- plain HTTP servers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/generate"])
def test_http_tgi_default_output_and_token_count(model_server: ModelServer, path: str) -> None:
    tgi = model(
        model_provider="http",
        endpoint_url=model_server.url + path,
        evaluation_config={"inference_parameters": {"max_new_tokens": 20, "details": True}},
    )
    response = invoke(build_runner(tgi), "hello there")

    assert response.text == "echo: hello there"
    assert response.output_tokens == 3
    (request,) = model_server.requests
    assert request.body == {"inputs": "hello there", "parameters": {"max_new_tokens": 20, "details": True}}


@pytest.mark.parametrize(("fault", "error"), [("throttle", RetryableError), ("bad_request", PermanentError)])
def test_http_tgi_failures_are_classified(model_server: ModelServer, fault: FaultKind, error: type[Exception]) -> None:
    runner = build_runner(model(model_provider="http", endpoint_url=model_server.url + "/generate"))
    model_server.inject(fault)
    with pytest.raises(error, match=r"HTTP \d{3}"):
        invoke(runner, "q")


def test_http_connection_refused_is_retryable() -> None:
    with ModelServer() as server:
        url = server.url + "/generate"
    with pytest.raises(RetryableError, match="ConnectionError"):
        invoke(build_runner(model(model_provider="http", endpoint_url=url)), "q")


def test_openai_chat_completions(model_server: ModelServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "local-key")
    chat = model(
        model_provider="openai",
        model_id="meta-llama/Llama-3.1-8B-Instruct",
        endpoint_url=model_server.url + "/v1",
        evaluation_config={
            "inference_parameters": {"max_new_tokens": 32, "temperature": 0.0},
            "prompt_template": "Answer briefly. $model_input",
        },
    )
    prompt = render_prompt(chat.evaluation_config.prompt_template, "capital of France?")
    response = invoke(build_runner(chat), prompt)

    assert response.text == f"echo: {prompt}"
    assert (response.input_tokens, response.output_tokens) == (5, 6)
    (request,) = model_server.requests
    assert request.route == "openai"
    assert request.headers["authorization"] == "Bearer local-key"
    assert request.body == {
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 32,
        "temperature": 0.0,
    }


# -- faults inside a 2xx body (issue 11, defect 3) ----------------------------------------------------------


def http_models(server: ModelServer) -> list[ModelConfig]:
    """One model per runner that speaks plain HTTP: TGI (both paths) and OpenAI chat completions."""
    return [
        model(model_provider="http", endpoint_url=server.url + "/generate"),
        model(model_provider="http", endpoint_url=server.url + "/"),
        model(model_provider="openai", endpoint_url=server.url),
    ]


@pytest.mark.parametrize("fault", ["truncated", "cut", "malformed"])
def test_http_body_faults_are_retryable(model_server: ModelServer, fault: FaultKind) -> None:
    for runner in map(build_runner, http_models(model_server)):
        model_server.inject(fault)
        with pytest.raises(RetryableError) as raised:
            invoke(runner, "q")
        expected = "ChunkedEncodingError" if fault == "cut" else "not JSON"
        assert expected in str(raised.value)
        # The connection pool recovers: the next call on the same runner is answered.
        assert invoke(runner, "q").text == "echo: q"
    assert model_server.faults_served[fault] == 3


def test_a_connection_cut_mid_body_is_retryable_on_the_aws_runners(
    reference_config: Config, model_server: ModelServer
) -> None:
    # Read through urllib3's raw stream, the cut escaped as urllib3's ProtocolError and was never retried.
    endpoint = build_runner(reference_config.model("falcon-7b"), endpoint_name="ep")
    native = build_runner(
        model(
            model_provider="bedrock",
            model_id="meta.llama3-8b-instruct-v1:0",
            evaluation_config={"content_template": {"prompt": "PROMPT_PLACEHOLDER"}, "output": "generation"},
        )
    )
    for runner in (endpoint, native):
        model_server.inject("cut")
        with pytest.raises(RetryableError, match=r"ResponseStreamingError|IncompleteRead"):
            invoke(runner, "q")
        assert invoke(runner, "q").text == "echo: q"
    assert model_server.faults_served["cut"] == 2


def aws_models(reference_config: Config) -> list[ModelRunner]:
    """One runner per AWS call that reads a model's answer: InvokeEndpoint, Converse and InvokeModel."""
    return [
        build_runner(reference_config.model("falcon-7b"), endpoint_name="ep"),
        build_runner(model(model_provider="bedrock", model_id="amazon.nova-micro-v1:0")),
        build_runner(
            model(
                model_provider="bedrock",
                model_id="meta.llama3-8b-instruct-v1:0",
                evaluation_config={"content_template": {"prompt": "PROMPT_PLACEHOLDER"}, "output": "generation"},
            )
        ),
    ]


@pytest.mark.parametrize("fault", ["truncated", "malformed"])
def test_a_damaged_2xx_body_is_retryable_on_the_aws_runners(
    reference_config: Config, model_server: ModelServer, fault: FaultKind
) -> None:
    # A complete but unparseable body failed the record for good; botocore parses a Converse body that
    # is not JSON into an answer without `output`, which read as "no text content".
    for runner in aws_models(reference_config):
        model_server.inject(fault)
        with pytest.raises(RetryableError, match="cut short or not JSON"):
            invoke(runner, "q")
        assert invoke(runner, "q").text == "echo: q"
    assert model_server.faults_served[fault] == 3


def test_an_empty_converse_answer_is_still_permanent(model_server: ModelServer) -> None:
    # A well-formed answer that holds no text is the model's answer, not a damaged body: no retry.
    runner = build_runner(model(model_provider="bedrock", model_id="amazon.nova-micro-v1:0"))
    model_server.inject("no_text")
    with pytest.raises(PermanentError, match="no text content"):
        invoke(runner, "q")


@pytest.mark.parametrize("fault", ["truncated", "malformed"])
def test_a_permanently_damaged_aws_body_fails_the_record_after_max_retries(
    reference_config: Config, model_server: ModelServer, fault: FaultKind
) -> None:
    model_server.fail_prompt("broken", fault)
    items = [PromptItem("a", "fine", "", "fine"), PromptItem("b", "broken", "", "broken")]
    for runner in aws_models(reference_config):
        model_server.reset_counters()
        result = invoke_quickly(items, runner, concurrency=2, max_retries=3)
        fine, broken = result.records
        assert fine.model_output == "echo: fine"
        assert broken.model_output is None
        assert broken.error is not None
        assert re.match(r"gave up after 4 attempts: .*cut short or not JSON", broken.error), broken.error
        assert model_server.requests_by_prompt["broken"] == 4
        assert result.model_calls == 5


def test_body_faults_at_a_fault_rate_are_all_answered_in_the_end(model_server: ModelServer) -> None:
    prompts = [f"question {i}" for i in range(60)]
    items = [PromptItem(f"r{i}", p, "", p) for i, p in enumerate(prompts)]
    for chat in http_models(model_server)[::2]:
        model_server.reset_counters()
        model_server.fail_rate(0.3, ["truncated", "cut"], seed=11)
        result = invoke_quickly(items, build_runner(chat), concurrency=4, max_retries=8)
        served = model_server.faults_served["truncated"] + model_server.faults_served["cut"]
        assert served >= 10, "the fault rate must really hit some requests"
        assert result.failed == 0
        assert [r.model_output for r in result.records] == [f"echo: {p}" for p in prompts]
        assert result.model_calls == len(prompts) + served


@pytest.mark.parametrize("fault", ["truncated", "cut"])
def test_a_permanent_body_fault_fails_the_record_after_max_retries(model_server: ModelServer, fault: FaultKind) -> None:
    model_server.fail_prompt("broken", fault)
    items = [PromptItem("a", "fine", "", "fine"), PromptItem("b", "broken", "", "broken")]
    for chat in http_models(model_server)[::2]:
        model_server.reset_counters()
        result = invoke_quickly(items, build_runner(chat), concurrency=2, max_retries=3)
        fine, broken = result.records
        assert fine.model_output == "echo: fine"
        assert broken.model_output is None
        assert broken.error is not None and broken.error.startswith("gave up after 4 attempts")
        assert model_server.requests_by_prompt["broken"] == 4


@pytest.mark.parametrize(
    "url", ["http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/chat/completions"]
)
def test_chat_completions_url(url: str) -> None:
    assert chat_completions_url(url) == "http://h:8000/v1/chat/completions"


# -- recorded responses ---------------------------------------------------------------------------------------


def test_recorded_sample_answers_every_sample_prompt(sample_config: Config, repo_root: Path) -> None:
    candidate = sample_config.models[0]
    assert candidate.responses_location is not None
    runner = build_runner(candidate, responses_path=str(repo_root / "prompt_catalog" / candidate.responses_location))
    catalog = repo_root / "prompt_catalog" / sample_config.dataset.input_data_location
    questions = [json.loads(line)["question"] for line in catalog.read_text().splitlines()]
    items = [
        PromptItem(str(i), q, "", render_prompt(candidate.evaluation_config.prompt_template, q))
        for i, q in enumerate(questions)
    ]

    result = invoke_all(items, runner, cache=None, concurrency=4, max_retries=2, timeout_seconds=1)

    assert result.failed == 0 and len(result.records) == len(questions) == 40
    assert result.model_calls == 0
    assert result.records[0].model_output == "The capital of Australia is Canberra."
    assert result.latency_stats().p95_ms is None
    assert all(r.tokens_estimated for r in result.records)


def test_recorded_matches_prompt_then_model_input_and_fails_missing(tmp_path: Path) -> None:
    responses = tmp_path / "responses.jsonl"
    lines = [
        {"prompt": "Q: alpha", "model_output": "from the prompt"},
        {"model_input": "beta", "model_output": "from the model input"},
        {
            "prompt": "Q: gamma",
            "referenceResponse": "g",
            "modelResponses": [
                {"response": "other model", "modelIdentifier": "someone-else"},
                {"response": "ours by id", "modelIdentifier": "model-x"},
            ],
        },
    ]
    responses.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    runner = build_runner(
        model(model_provider="recorded", model_id="model-x", responses_location="r.jsonl"),
        responses_path=str(responses),
    )
    items = [
        PromptItem(name, raw, "", f"Q: {raw}") for name, raw in [("a", "alpha"), ("b", "beta"), ("c", "gamma")]
    ] + [PromptItem("d", "delta", "", "Q: delta")]

    result = invoke_all(items, runner, cache=None, concurrency=2, max_retries=3, timeout_seconds=1)

    assert [r.model_output for r in result.records] == ["from the prompt", "from the model input", "ours by id", None]
    missing = result.records[3]
    assert missing.error == f"no recorded response for this prompt in {responses}"
    assert (missing.attempts, result.model_calls) == (0, 0)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 1: not valid JSON"),
        ('{"prompt": "p"}', "line 1: expected the response text as a string"),
        ('{"prompt": "p", "modelResponses": []}', "line 1: modelResponses must be a non-empty list"),
        (
            '{"prompt": "p", "modelResponses": [{"response": "a", "modelIdentifier": "x"}, '
            '{"response": "b", "modelIdentifier": "y"}]}',
            "no modelResponses entry has modelIdentifier candidate",
        ),
    ],
)
def test_unusable_recorded_file_names_the_line(tmp_path: Path, line: str, message: str) -> None:
    responses = tmp_path / "responses.jsonl"
    responses.write_text(line + "\n")
    with pytest.raises(RecordedResponsesError, match=message):
        build_runner(model(model_provider="recorded", responses_location="r.jsonl"), responses_path=str(responses))
