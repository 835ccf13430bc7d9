"""The official OpenAI and Anthropic SDKs, unchanged except for their base URL
and API key, work through the staunch-gateway binary (issue 13).

The gateway runs with the configuration conftest.py writes: its embedded
mock, one route `*` to two mock targets, and one client key. Every request
here is real HTTP on loopback, read through the SDK's own parsing (its
server-sent-event parser and stream helpers included); nothing is stubbed.
"""

import inspect
import json

import anthropic
import openai
import pytest
from anthropic.types import TextBlock, ToolUseBlock
from openai.types.chat import ChatCompletion, ChatCompletionMessageToolCall

from wire import (
    MODEL_OPENAI,
    MODEL_ANTHROPIC,
    PROMPT,
    OPENAI_TOOLS,
    ANTHROPIC_TOOLS,
    GetWeather,
    mock_text,
    stream_method,
    FunctionToolCall,
)


# The gateway retries and falls back on its own; the SDKs must not hide what
# it does by retrying too.


@pytest.fixture
def oai(gateway_service):
    with openai.OpenAI(
        base_url=f"{gateway_service.url}/v1", api_key=gateway_service.key, max_retries=0, timeout=20
    ) as client:
        yield client


@pytest.fixture
def ant(gateway_service):
    with anthropic.Anthropic(
        base_url=gateway_service.url, api_key=gateway_service.key, max_retries=0, timeout=20
    ) as client:
        yield client


def _staunch_model(headers, gateway_service):
    """The `x-staunch-model` header, checked: the mock's scenario has no
    faults, so the route's first target answers at the first attempt."""
    model = headers.get("x-staunch-model")
    assert model == gateway_service.target_models[0], dict(headers)
    assert headers.get("x-staunch-tier") == "full", dict(headers)
    assert headers.get("x-staunch-attempts") == "1", dict(headers)
    return model


# --- OpenAI Chat Completions ----------------------------------------------------


def test_openai_chat_non_streamed(oai, gateway_service):
    messages = [{"role": "user", "content": PROMPT}]
    raw = oai.chat.completions.with_raw_response.create(model=MODEL_OPENAI, messages=messages)
    assert raw.status_code == 200
    model = _staunch_model(raw.headers, gateway_service)
    completion = raw.parse()

    assert isinstance(completion, ChatCompletion), type(completion)
    assert completion.object == "chat.completion"
    assert completion.model == model
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == mock_text(PROMPT)
    assert not choice.message.tool_calls
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_openai_chat_streamed_with_usage(oai, gateway_service):
    messages = [{"role": "user", "content": PROMPT}]
    whole = oai.chat.completions.create(model=MODEL_OPENAI, messages=messages)

    with oai.chat.completions.with_streaming_response.create(
        model=MODEL_OPENAI,
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        model = _staunch_model(response.headers, gateway_service)
        stream = response.parse()
        assert isinstance(stream, openai.Stream), type(stream)
        chunks = list(stream)

    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert all(c.model == model for c in chunks), {c.model for c in chunks}
    assert chunks[0].choices[0].delta.role == "assistant"
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 1, "the mock streams text in pieces"
    text = "".join(c.choices[0].delta.content for c in content_chunks)
    assert text == whole.choices[0].message.content == mock_text(PROMPT)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"], finishes

    # include_usage: the last chunk has no choices and the usage; no other
    # chunk has any.
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None, last
    assert all(c.usage is None for c in chunks[:-1])
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens
    assert last.usage.completion_tokens == whole.usage.completion_tokens
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


def test_openai_stream_helper_final_completion(oai):
    messages = [{"role": "user", "content": "Name three colours of the rainbow, please."}]
    open_stream = stream_method(oai)
    with open_stream(model=MODEL_OPENAI, messages=messages, stream_options={"include_usage": True}) as stream:
        text = "".join(event.delta for event in stream if event.type == "content.delta")
        final = stream.get_final_completion()

    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == text == mock_text(messages[0]["content"])
    assert final.usage is not None and final.usage.completion_tokens > 0


def test_openai_tool_call_non_streamed(oai):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    completion = oai.chat.completions.create(model=MODEL_OPENAI, messages=messages, tools=OPENAI_TOOLS)

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls and len(choice.message.tool_calls) == 1, choice.message
    call = choice.message.tool_calls[0]
    assert isinstance(call, (ChatCompletionMessageToolCall, FunctionToolCall)), type(call)
    assert call.type == "function"
    assert call.id
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments.get("city"), str), arguments

    # The tool's result goes back through the gateway too.
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "21 C"},
    ]
    follow_up = oai.chat.completions.create(model=MODEL_OPENAI, messages=messages, tools=OPENAI_TOOLS)
    choice = follow_up.choices[0]
    assert choice.finish_reason == "stop"
    assert not choice.message.tool_calls
    assert "21 C" in choice.message.content


def test_openai_tool_call_streamed(oai):
    if not hasattr(openai, "pydantic_function_tool"):
        pytest.skip(f"openai {openai.__version__} has no pydantic_function_tool")
    # A strict function tool, so the helper also parses the arguments.
    tools = [openai.pydantic_function_tool(GetWeather, name="get_weather")]
    messages = [{"role": "user", "content": "What is the weather in Lyon?"}]
    open_stream = stream_method(oai)
    argument_deltas, done = [], []
    with open_stream(model=MODEL_OPENAI, messages=messages, tools=tools) as stream:
        for event in stream:
            if event.type == "tool_calls.function.arguments.delta":
                argument_deltas.append(event.arguments_delta)
            elif event.type == "tool_calls.function.arguments.done":
                done.append(event)
        final = stream.get_final_completion()

    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls and len(choice.message.tool_calls) == 1, choice.message
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.id
    assert call.function.name == "get_weather"
    assert len(argument_deltas) > 1, "the mock streams the arguments in pieces"
    assert "".join(argument_deltas) == call.function.arguments
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments.get("city"), str), arguments
    assert isinstance(call.function.parsed_arguments, GetWeather), call.function
    assert call.function.parsed_arguments.city == arguments["city"]
    assert len(done) == 1 and done[0].name == "get_weather"
    assert isinstance(done[0].parsed_arguments, GetWeather)


def test_openai_tool_call_raw_stream(oai):
    # The chunks themselves, without the helper: one call, its id and name
    # in the first delta, its arguments in pieces that join into JSON.
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    chunks = list(oai.chat.completions.create(model=MODEL_OPENAI, messages=messages, tools=OPENAI_TOOLS, stream=True))
    deltas = [call for c in chunks if c.choices for call in (c.choices[0].delta.tool_calls or [])]
    assert deltas, chunks
    assert {d.index for d in deltas} == {0}
    assert deltas[0].id and deltas[0].function.name == "get_weather", deltas[0]
    arguments = json.loads("".join(d.function.arguments or "" for d in deltas))
    assert isinstance(arguments.get("city"), str), arguments
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"], finishes


def test_openai_models_list_is_the_routes(oai, gateway_service):
    models = list(oai.models.list())
    assert [m.id for m in models] == list(gateway_service.routes), models
    assert all(m.object == "model" for m in models)


def test_openai_wrong_key_is_authentication_error(gateway_service):
    with openai.OpenAI(
        base_url=f"{gateway_service.url}/v1", api_key="sk-not-the-key", max_retries=0, timeout=20
    ) as client:
        with pytest.raises(openai.AuthenticationError) as chat:
            client.chat.completions.create(model=MODEL_OPENAI, messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.AuthenticationError) as models:
            client.models.list()
    for error in (chat.value, models.value):
        assert error.status_code == 401
        assert error.type == "authentication_error", error.body
        assert error.code == "invalid_api_key", error.body


# Bodies the SDK sends as they are (it does not validate TypedDicts) and the
# gateway refuses with a 400 in OpenAI's shape: (messages, error code).
BAD_OPENAI_BODIES = [
    pytest.param("not a list of messages", "invalid_type", id="messages-not-a-list"),
    pytest.param([{"role": "wizard", "content": "hi"}], "invalid_type", id="unknown-role"),
    pytest.param([{"role": "user", "content": [{"type": "text", "text": 42}]}], "invalid_value", id="text-part-not-a-string"),
    pytest.param([{"role": "user", "content": [{"text": "hi"}]}], "invalid_value", id="content-part-without-type"),
    pytest.param([{"role": "tool", "content": "21 C"}], "invalid_value", id="tool-message-without-call-id"),
    pytest.param(
        [{"role": "user", "content": [{"type": "text", "text": "hi", "bogus_field": 1}]}],
        "invalid_value",
        id="unknown-field-in-content-part",
    ),
    pytest.param([], "invalid_value", id="no-messages"),
]


@pytest.mark.parametrize(("messages", "code"), BAD_OPENAI_BODIES)
def test_openai_invalid_body_is_bad_request(oai, messages, code):
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model=MODEL_OPENAI, messages=messages)
    error = caught.value
    assert error.status_code == 400
    assert error.type == "invalid_request_error", error.body
    assert error.code == code, error.body


def test_openai_invalid_json_is_bad_request(oai):
    # Not JSON at all: the SDK's raw `post` sends the bytes as they are
    # (as `content` since openai 2.x; `body` before, now deprecated).
    broken = b'{"model": "mock-gpt", "messages": ['
    payload = {"content": broken} if "content" in inspect.signature(oai.post).parameters else {"body": broken}
    with pytest.raises(openai.BadRequestError) as caught:
        oai.post(
            "/chat/completions",
            cast_to=ChatCompletion,
            options={"headers": {"content-type": "application/json"}},
            **payload,
        )
    assert caught.value.status_code == 400
    assert caught.value.code == "invalid_json", caught.value.body


# --- Anthropic Messages ------------------------------------------------------------


def test_anthropic_messages_create(ant, gateway_service):
    messages = [{"role": "user", "content": PROMPT}]
    raw = ant.messages.with_raw_response.create(model=MODEL_ANTHROPIC, max_tokens=256, messages=messages)
    assert raw.status_code == 200
    model = _staunch_model(raw.headers, gateway_service)
    message = raw.parse()

    assert message.type == "message" and message.role == "assistant"
    assert message.model == model
    assert [block.type for block in message.content] == ["text"], message.content
    assert isinstance(message.content[0], TextBlock)
    assert message.content[0].text == mock_text(PROMPT)
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


def test_anthropic_messages_stream(ant, gateway_service):
    messages = [{"role": "user", "content": PROMPT}]
    whole = ant.messages.create(model=MODEL_ANTHROPIC, max_tokens=256, messages=messages)

    with ant.messages.stream(model=MODEL_ANTHROPIC, max_tokens=256, messages=messages) as stream:
        model = _staunch_model(stream.response.headers, gateway_service)
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        pieces = list(stream.text_stream)
        final = stream.get_final_message()

    assert len(pieces) > 1, "the mock streams text in pieces"
    text = "".join(pieces)
    assert [block.type for block in final.content] == ["text"], final.content
    assert isinstance(final.content[0], TextBlock)
    assert final.content[0].text == text == whole.content[0].text == mock_text(PROMPT)
    assert final.role == "assistant"
    assert final.model == model
    assert final.stop_reason == whole.stop_reason == "end_turn"
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens


def test_anthropic_tool_use(ant):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    message = ant.messages.create(model=MODEL_ANTHROPIC, max_tokens=256, tools=ANTHROPIC_TOOLS, messages=messages)

    assert message.stop_reason == "tool_use"
    uses = [block for block in message.content if block.type == "tool_use"]
    assert len(uses) == 1, message.content
    use = uses[0]
    assert isinstance(use, ToolUseBlock), type(use)
    assert use.id
    assert use.name == "get_weather"
    assert isinstance(use.input.get("city"), str), use.input

    # The tool's result goes back through the gateway too.
    messages += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in message.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "21 C"}]},
    ]
    follow_up = ant.messages.create(model=MODEL_ANTHROPIC, max_tokens=256, tools=ANTHROPIC_TOOLS, messages=messages)
    assert follow_up.stop_reason == "end_turn"
    assert "21 C" in "".join(block.text for block in follow_up.content if isinstance(block, TextBlock))


def test_anthropic_tool_use_streamed(ant):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    partials = []
    with ant.messages.stream(model=MODEL_ANTHROPIC, max_tokens=256, tools=ANTHROPIC_TOOLS, messages=messages) as stream:
        for event in stream:
            if event.type == "input_json":
                partials.append(event.partial_json)
        final = stream.get_final_message()

    assert final.stop_reason == "tool_use"
    uses = [block for block in final.content if block.type == "tool_use"]
    assert len(uses) == 1, final.content
    use = uses[0]
    assert isinstance(use, ToolUseBlock), type(use)
    assert use.id and use.name == "get_weather"
    assert isinstance(use.input, dict) and isinstance(use.input.get("city"), str), use.input
    assert len(partials) > 1, "the mock streams the input in pieces"
    assert json.loads("".join(partials)) == use.input


def test_anthropic_wrong_key_is_authentication_error(gateway_service):
    with anthropic.Anthropic(
        base_url=gateway_service.url, api_key="sk-ant-not-the-key", max_retries=0, timeout=20
    ) as client:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            client.messages.create(model=MODEL_ANTHROPIC, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(anthropic.AuthenticationError):
            with client.messages.stream(
                model=MODEL_ANTHROPIC, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
            ) as stream:
                stream.get_final_message()
    error = caught.value
    assert error.status_code == 401
    assert error.body["type"] == "error", error.body
    assert error.body["error"]["type"] == "authentication_error", error.body


def test_anthropic_invalid_body_is_bad_request(ant):
    with pytest.raises(anthropic.BadRequestError) as caught:
        ant.messages.create(model=MODEL_ANTHROPIC, max_tokens=16, messages="not a list of messages")
    error = caught.value
    assert error.status_code == 400
    assert error.body["type"] == "error", error.body
    assert error.body["error"]["type"] == "invalid_request_error", error.body
