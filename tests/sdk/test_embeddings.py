"""The official OpenAI Python SDK's `client.embeddings.create` works unchanged
against staunch-mock's `POST /v1/embeddings` and through the staunch-gateway
binary's (issue 23).

The SDK asks for `encoding_format="base64"` when the caller names none and
decodes the answer into floats itself (with numpy when installed, else the
standard library); with `encoding_format="base64"` named it hands back the
base64 text; with `"float"` the numbers as sent. All three are checked here
against each other, over real HTTP on loopback; nothing is stubbed.
"""

import base64
import json
import math
import struct
import urllib.request

import openai
import pytest

MODEL = "text-embedding-3-small"
# The mock's default vector length (staunch_mock::DEFAULT_EMBEDDING_DIMENSIONS).
DEFAULT_DIMENSIONS = 16
# Its default inputs-per-request limit, OpenAI's.
MAX_INPUTS = 2048
TEXTS = ["The quick brown fox", "jumps over", "the lazy dog"]


@pytest.fixture
def oai(mock_url):
    with openai.OpenAI(base_url=f"{mock_url}/v1", api_key="sk-test", max_retries=0, timeout=10) as client:
        yield client


def _get(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _post(url, body):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def _last_embeddings_request(mock_url):
    recent = [r for r in _get(f"{mock_url}/_mock/stats")["recent"] if r["route"] == "embeddings"]
    assert recent, "the mock saw no embeddings request"
    return recent[-1]["body"]


def _floats(vector):
    # numpy arrays and lists alike.
    return [float(x) for x in vector]


def _close(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-7), (x, y)


def test_embeddings_default_request_is_base64_and_decodes_to_floats(oai, mock_url):
    response = oai.embeddings.create(model=MODEL, input=TEXTS)

    sent = _last_embeddings_request(mock_url)
    assert sent["encoding_format"] == "base64", "the SDK's default"
    assert sent["input"] == TEXTS

    assert response.object == "list"
    assert response.model == MODEL
    assert [d.index for d in response.data] == [0, 1, 2]
    for item in response.data:
        assert item.object == "embedding"
        vector = _floats(item.embedding)
        assert len(vector) == DEFAULT_DIMENSIONS
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-5)
    # 19, 10 and 12 bytes at four bytes a token, rounded up per input.
    assert response.usage.prompt_tokens == 5 + 3 + 3
    assert response.usage.total_tokens == response.usage.prompt_tokens


def test_embeddings_float_base64_and_default_agree(oai, mock_url):
    default = oai.embeddings.create(model=MODEL, input=TEXTS)
    floats = oai.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    assert _last_embeddings_request(mock_url)["encoding_format"] == "float"
    raw = oai.embeddings.create(model=MODEL, input=TEXTS, encoding_format="base64")

    for d, f, r in zip(default.data, floats.data, raw.data):
        assert isinstance(f.embedding, list) and all(isinstance(x, float) for x in f.embedding)
        _close(_floats(d.embedding), f.embedding)
        # Named explicitly, base64 comes back as the text the wire carried:
        # little-endian f32s.
        assert isinstance(r.embedding, str)
        data = base64.b64decode(r.embedding)
        decoded = list(struct.unpack(f"<{len(data) // 4}f", data))
        _close(decoded, f.embedding)


def test_embeddings_are_deterministic_per_input(oai):
    batch = oai.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    single = oai.embeddings.create(model=MODEL, input=TEXTS[1], encoding_format="float")
    assert len(single.data) == 1
    assert single.data[0].embedding == batch.data[1].embedding
    assert batch.data[0].embedding != batch.data[1].embedding


def test_embeddings_dimensions_and_token_arrays(oai, mock_url):
    short = oai.embeddings.create(model=MODEL, input=TEXTS, dimensions=8)
    assert _last_embeddings_request(mock_url)["dimensions"] == 8
    assert all(len(_floats(d.embedding)) == 8 for d in short.data)

    tokens = oai.embeddings.create(model=MODEL, input=[[1, 2, 3], [4, 5]])
    assert len(tokens.data) == 2
    assert tokens.usage.prompt_tokens == 5


def test_embeddings_over_the_batch_limit_is_a_bad_request(oai):
    with pytest.raises(openai.BadRequestError) as caught:
        oai.embeddings.create(model=MODEL, input=["x"] * (MAX_INPUTS + 1))
    assert caught.value.status_code == 400
    assert f"The max number of inputs is {MAX_INPUTS}" in str(caught.value)
    # An empty batch is refused too.
    with pytest.raises(openai.BadRequestError):
        oai.embeddings.create(model=MODEL, input=[])


def test_embeddings_faults_reach_the_sdk_as_its_errors(oai, mock_url):
    original = _get(f"{mock_url}/_mock/scenario")
    faulty = json.loads(json.dumps(original))
    faulty["embeddings"]["random"] = [{"probability": 1.0, "fault": {"type": "rate_limit", "retry_after": 2}}]
    _post(f"{mock_url}/_mock/scenario", faulty)
    try:
        with pytest.raises(openai.RateLimitError) as caught:
            oai.embeddings.create(model=MODEL, input=TEXTS)
        assert caught.value.status_code == 429
        assert caught.value.response.headers["retry-after"] == "2"
        assert caught.value.code == "rate_limit_exceeded"

        faulty["embeddings"]["random"] = [{"probability": 1.0, "fault": {"type": "context_overflow"}}]
        _post(f"{mock_url}/_mock/scenario", faulty)
        with pytest.raises(openai.BadRequestError) as caught:
            oai.embeddings.create(model=MODEL, input=TEXTS)
        assert caught.value.code == "context_length_exceeded"
    finally:
        _post(f"{mock_url}/_mock/scenario", original)
    assert len(oai.embeddings.create(model=MODEL, input=TEXTS).data) == 3


# --- through staunch-gateway --------------------------------------------------
# The gateway of conftest.py: its embedded mock, a route `text-embedding-*`
# to one mock embedding target, a chat route `*` of two models (which
# serves no embeddings: two models are two vector spaces), a client key.


@pytest.fixture
def gw(gateway_service):
    with openai.OpenAI(
        base_url=f"{gateway_service.url}/v1", api_key=gateway_service.key, max_retries=0, timeout=20
    ) as client:
        yield client


def test_gateway_embeddings_default_request_decodes_to_floats(gw, gateway_service):
    raw = gw.embeddings.with_raw_response.create(model=MODEL, input=TEXTS)
    response = raw.parse()
    assert raw.headers["x-staunch-tier"] == "full"
    assert raw.headers["x-staunch-attempts"] == "1"
    assert raw.headers["x-staunch-target"] == f"mock/{gateway_service.embedding_model}"

    assert response.object == "list"
    assert response.model == gateway_service.embedding_model
    assert [d.index for d in response.data] == [0, 1, 2]
    for item in response.data:
        assert item.object == "embedding"
        vector = _floats(item.embedding)
        assert len(vector) == DEFAULT_DIMENSIONS
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-5)
    assert response.usage.prompt_tokens == 5 + 3 + 3
    assert response.usage.total_tokens == response.usage.prompt_tokens


def test_gateway_embeddings_float_base64_and_default_agree_with_the_mock(gw, oai):
    default = gw.embeddings.create(model=MODEL, input=TEXTS)
    floats = gw.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    raw = gw.embeddings.create(model=MODEL, input=TEXTS, encoding_format="base64")
    # The mock asked directly for the gateway's target model: the same vectors.
    direct = oai.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")

    for d, f, r, m in zip(default.data, floats.data, raw.data, direct.data):
        assert isinstance(f.embedding, list) and all(isinstance(x, float) for x in f.embedding)
        _close(_floats(d.embedding), f.embedding)
        assert isinstance(r.embedding, str)
        data = base64.b64decode(r.embedding)
        _close(list(struct.unpack(f"<{len(data) // 4}f", data)), f.embedding)
        _close(f.embedding, m.embedding)


def test_gateway_embeddings_dimensions_and_token_arrays(gw):
    short = gw.embeddings.create(model=MODEL, input=TEXTS, dimensions=8, user="user-1")
    assert all(len(_floats(d.embedding)) == 8 for d in short.data)

    tokens = gw.embeddings.create(model=MODEL, input=[[1, 2, 3], [4, 5]])
    assert len(tokens.data) == 2
    assert tokens.usage.prompt_tokens == 5

    single = gw.embeddings.create(model=MODEL, input=TEXTS[1], encoding_format="float")
    batch = gw.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    assert single.data[0].embedding == batch.data[1].embedding


def test_gateway_embeddings_errors_reach_the_sdk_as_its_errors(gw, gateway_service):
    # A chat route of two models serves no embeddings, and says why.
    with pytest.raises(openai.BadRequestError) as caught:
        gw.embeddings.create(model=gateway_service.target_models[0], input=TEXTS)
    assert caught.value.code == "embeddings_unsupported"
    assert "vector spaces" in str(caught.value)

    with pytest.raises(openai.BadRequestError) as caught:
        gw.embeddings.create(model=MODEL, input=[])
    assert caught.value.code == "invalid_value"

    # The mock's batch limit, passed through as the provider's refusal.
    with pytest.raises(openai.BadRequestError) as caught:
        gw.embeddings.create(model=MODEL, input=["x"] * (MAX_INPUTS + 1))
    assert f"The max number of inputs is {MAX_INPUTS}" in str(caught.value)

    with openai.OpenAI(
        base_url=f"{gateway_service.url}/v1", api_key="sk-wrong", max_retries=0, timeout=20
    ) as stranger:
        with pytest.raises(openai.AuthenticationError):
            stranger.embeddings.create(model=MODEL, input=TEXTS)
