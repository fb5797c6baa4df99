"""The `openai` Python client, unchanged, against infercache's
/v1/embeddings: its default (base64) and float encodings, and errors."""
import math
import os
import signal

import openai
import pytest

from conftest import ROOT, start_server


@pytest.fixture(scope="module")
def client():
    proc, address = start_server("--config", str(ROOT / "examples" / "minilm.toml"))
    yield openai.OpenAI(base_url=f"http://{address}/v1", api_key="unused", max_retries=0)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_default_settings_base64(client):
    result = client.embeddings.create(model="minilm", input=["A man is eating food.", "A man is eating a meal."])
    assert len(result.data) == 2
    assert [d.index for d in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 384
    assert cosine(result.data[0].embedding, result.data[1].embedding) > 0.8
    assert result.usage.prompt_tokens > 0


def test_float_encoding_matches_base64(client):
    text = "The stock market crashed."
    as_float = client.embeddings.create(model="minilm", input=text, encoding_format="float")
    as_b64 = client.embeddings.create(model="minilm", input=text)
    assert as_float.data[0].embedding == pytest.approx(as_b64.data[0].embedding, abs=1e-7)


def test_errors_are_openai_errors(client):
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nope", input="x")
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="minilm", input=[""])
    assert "empty" in str(e.value)


def test_models_list_and_retrieve(client):
    listed = client.models.list()
    assert [m.id for m in listed.data] == ["minilm"]
    assert listed.data[0].object == "model"
    assert listed.data[0].owned_by == "infercache"
    assert listed.data[0].created > 1_600_000_000
    model = client.models.retrieve("minilm")
    assert (model.id, model.created) == ("minilm", listed.data[0].created)
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("nope")
    assert "GET /v1/models" in str(e.value)
