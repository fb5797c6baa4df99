"""Triton's own HTTP client, unchanged, against infercache: metadata,
health, and infer with JSON and binary tensors."""
import json
import pathlib

import numpy as np
import tritonclient.http as httpclient

EXPECTED = json.loads((pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "models" / "expected.json").read_text())
NUMPY = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64, "UINT8": np.uint8, "BOOL": np.bool_}


def client(address):
    return httpclient.InferenceServerClient(url=address)


def test_health_and_metadata(server):
    c = client(server)
    assert c.is_server_live()
    assert c.is_server_ready()
    assert c.is_model_ready("mlp")
    meta = c.get_model_metadata("mlp")
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]
    assert "binary_tensor_data" in c.get_server_metadata()["extensions"]


def infer(c, name, binary):
    case = EXPECTED[name]
    inputs = []
    for spec in case["inputs"]:
        array = np.array(spec["data"], dtype=NUMPY[spec["datatype"]]).reshape(spec["shape"])
        tensor = httpclient.InferInput(spec["name"], list(array.shape), spec["datatype"])
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    outputs = [httpclient.InferRequestedOutput(o["name"], binary_data=binary) for o in case["outputs"]]
    return c.infer(name, inputs, outputs=outputs), case


def test_infer_json_and_binary_agree_with_onnxruntime(server):
    c = client(server)
    for name in EXPECTED:
        for binary in (False, True):
            result, case = infer(c, name, binary)
            for want in case["outputs"]:
                got = result.as_numpy(want["name"])
                expected = np.array(want["data"], dtype=NUMPY[want["datatype"]]).reshape(want["shape"])
                assert got.dtype == expected.dtype, name
                if np.issubdtype(expected.dtype, np.floating):
                    np.testing.assert_allclose(got, expected, rtol=1e-5, err_msg=name)
                else:
                    np.testing.assert_array_equal(got, expected, err_msg=name)


def test_default_outputs_and_cache_header(server):
    c = client(server)
    x = np.random.default_rng(3).standard_normal((5, 16)).astype(np.float32)
    tensor = httpclient.InferInput("x", [5, 16], "FP32")
    tensor.set_data_from_numpy(x)
    first = c.infer("mlp", [tensor])
    second = c.infer("mlp", [tensor])
    np.testing.assert_array_equal(first.as_numpy("y"), second.as_numpy("y"))
    assert first.as_numpy("y").shape == (5, 4)


def test_errors_come_back_as_exceptions(server):
    c = client(server)
    tensor = httpclient.InferInput("x", [1, 15], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 15), dtype=np.float32))
    try:
        c.infer("mlp", [tensor])
    except Exception as e:  # tritonclient raises InferenceServerException
        assert "shape" in str(e)
    else:
        raise AssertionError("a wrong shape was accepted")
