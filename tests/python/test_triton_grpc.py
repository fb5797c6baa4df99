"""Triton's own gRPC client, unchanged, against infercache on its one
listener: metadata, readiness, infer on the fixture models (bit-identical
to REST and to a direct onnxruntime run), the cache shared with REST, and
Triton's status codes for errors."""
import json
import pathlib

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXPECTED = json.loads((ROOT / "fixtures" / "models" / "expected.json").read_text())
NUMPY = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64, "UINT8": np.uint8, "BOOL": np.bool_}


def cache_status(result):
    return result.get_response().parameters["x-cache"].string_param


def inputs_of(name):
    return {
        spec["name"]: (np.array(spec["data"], dtype=NUMPY[spec["datatype"]]).reshape(spec["shape"]), spec["datatype"])
        for spec in EXPECTED[name]["inputs"]
    }


def grpc_infer(c, name, arrays):
    tensors = []
    for input_name, (array, datatype) in arrays.items():
        t = grpcclient.InferInput(input_name, list(array.shape), datatype)
        t.set_data_from_numpy(array)
        tensors.append(t)
    outputs = [grpcclient.InferRequestedOutput(o["name"]) for o in EXPECTED[name]["outputs"]]
    return c.infer(name, tensors, outputs=outputs)


def rest_infer(address, name, arrays):
    c = httpclient.InferenceServerClient(url=address)
    tensors = []
    for input_name, (array, datatype) in arrays.items():
        t = httpclient.InferInput(input_name, list(array.shape), datatype)
        t.set_data_from_numpy(array, binary_data=True)
        tensors.append(t)
    outputs = [httpclient.InferRequestedOutput(o["name"], binary_data=True) for o in EXPECTED[name]["outputs"]]
    return c.infer(name, tensors, outputs=outputs)


def test_health_and_metadata(server):
    c = grpcclient.InferenceServerClient(url=server)
    assert c.is_server_live()
    assert c.is_server_ready()
    assert c.is_model_ready("mlp")
    assert not c.is_model_ready("no_such_model")
    meta = c.get_model_metadata("mlp", as_json=True)
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "16"]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": ["-1", "4"]}]
    assert c.get_server_metadata().name == "infercache"


def test_every_fixture_model_is_bit_identical_to_rest_and_onnxruntime(server):
    c = grpcclient.InferenceServerClient(url=server)
    for name in EXPECTED:
        arrays = inputs_of(name)
        result = grpc_infer(c, name, arrays)
        rest = rest_infer(server, name, arrays)
        session = ort.InferenceSession(str(ROOT / "fixtures" / "models" / f"{name}.onnx"))
        direct = session.run(None, {k: a for k, (a, _) in arrays.items()})
        names = [o.name for o in session.get_outputs()]
        for want in EXPECTED[name]["outputs"]:
            got = result.as_numpy(want["name"])
            reference = direct[names.index(want["name"])]
            assert got.dtype == reference.dtype, name
            assert got.shape == reference.shape, name
            assert got.tobytes() == rest.as_numpy(want["name"]).tobytes(), name
            assert got.tobytes() == reference.tobytes(), name


def test_int64_model_and_requested_outputs(server):
    c = grpcclient.InferenceServerClient(url=server)
    idx = np.array([[0, 2, 1]], dtype=np.int64).reshape(3)
    t = grpcclient.InferInput("idx", [3], "INT64")
    t.set_data_from_numpy(idx)
    result = c.infer("lookup", [t])
    assert result.as_numpy("y").shape == (3, 2)
    a = np.ones((2, 4), dtype=np.float32)
    b = np.arange(8, dtype=np.int64).reshape(2, 4)
    ta = grpcclient.InferInput("a", [2, 4], "FP32")
    ta.set_data_from_numpy(a)
    tb = grpcclient.InferInput("b", [2, 4], "INT64")
    tb.set_data_from_numpy(b)
    only = c.infer("two_io", [ta, tb], outputs=[grpcclient.InferRequestedOutput("count")])
    assert only.as_numpy("sum") is None
    assert only.as_numpy("count").dtype == np.int64


def test_a_result_computed_over_rest_is_a_grpc_hit_and_back(server):
    c = grpcclient.InferenceServerClient(url=server)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 16)).astype(np.float32)
    rest = rest_infer(server, "mlp", {"x": (x, "FP32")})
    first = grpc_infer(c, "mlp", {"x": (x, "FP32")})
    assert cache_status(first) == "hit"
    assert first.as_numpy("y").tobytes() == rest.as_numpy("y").tobytes()
    fresh = rng.standard_normal((1, 16)).astype(np.float32)
    miss = grpc_infer(c, "mlp", {"x": (fresh, "FP32")})
    hit = grpc_infer(c, "mlp", {"x": (fresh, "FP32")})
    assert (cache_status(miss), cache_status(hit)) == ("miss", "hit")
    again = httpclient.InferenceServerClient(url=server)
    t = httpclient.InferInput("x", [1, 16], "FP32")
    t.set_data_from_numpy(fresh, binary_data=True)
    response = again.infer("mlp", [t])
    assert response.as_numpy("y").tobytes() == hit.as_numpy("y").tobytes()


def test_errors_carry_triton_status_codes(server):
    c = grpcclient.InferenceServerClient(url=server)
    x = np.zeros((1, 16), dtype=np.float32)
    with pytest.raises(InferenceServerException) as unknown:
        grpc_infer_one(c, "no_such_model", "x", x)
    assert unknown.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as shape:
        grpc_infer_one(c, "mlp", "x", np.zeros((1, 15), dtype=np.float32))
    assert shape.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "shape" in shape.value.message()
    with pytest.raises(InferenceServerException) as dtype:
        grpc_infer_one(c, "mlp", "x", np.zeros((1, 16), dtype=np.int32), "INT32")
    assert dtype.value.status() == "StatusCode.INVALID_ARGUMENT"


def grpc_infer_one(c, model, name, array, datatype="FP32"):
    t = grpcclient.InferInput(name, list(array.shape), datatype)
    t.set_data_from_numpy(array)
    return c.infer(model, [t])


def test_stream_infer_answers_in_order(server):
    import queue

    answers = queue.Queue()
    c = grpcclient.InferenceServerClient(url=server)
    c.start_stream(callback=lambda result, error: answers.put((result, error)))
    x = np.full((1, 16), 0.25, dtype=np.float32)
    for request_id in ("a", "b"):
        t = grpcclient.InferInput("x", [1, 16], "FP32")
        t.set_data_from_numpy(x)
        c.async_stream_infer("mlp", [t], request_id=request_id)
    got = [answers.get(timeout=30) for _ in range(2)]
    c.stop_stream()
    assert [error for _, error in got] == [None, None]
    assert [r.get_response().id for r, _ in got] == ["a", "b"]
    assert got[0][0].as_numpy("y").tobytes() == got[1][0].as_numpy("y").tobytes()
