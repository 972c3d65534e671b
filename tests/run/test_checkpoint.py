import json

import pytest
import torch

from dcgan.errors import UserError
from dcgan.run import checkpoint


def _save(root, step, keep_last=3):
    weights = {"w": torch.full((3,), float(step))}
    state = {"progress": {"step": step}, "rng": [{"noise": torch.arange(4, dtype=torch.uint8)}]}
    return checkpoint.save_checkpoint(root, step, weights, weights, state, {"step": str(step)}, keep_last)


def test_save_writes_a_complete_verified_folder(tmp_path):
    path = _save(tmp_path, 5)
    assert path.name == "step_0000005"
    assert sorted(p.name for p in path.iterdir()) == [
        "discriminator.safetensors", "generator.safetensors", "manifest.json", "state.pt"
    ]  # fmt: skip
    assert checkpoint.verify(path) is None
    assert (tmp_path / "latest").read_text().strip() == "step_0000005"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    g, d, state = checkpoint.load_checkpoint(path)
    assert torch.equal(g["w"], torch.full((3,), 5.0)) and state["progress"] == {"step": 5}


def test_keeps_only_the_newest(tmp_path):
    for step in (1, 2, 10, 11):
        _save(tmp_path, step, keep_last=2)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["step_0000010", "step_0000011"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "manifest"])
def test_damaged_newest_checkpoint_is_skipped_for_the_previous(tmp_path, damage):
    _save(tmp_path, 1)
    newest = _save(tmp_path, 2)
    target = newest / "state.pt"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:-10])
    elif damage == "flip":
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "delete":
        target.unlink()
    else:
        (newest / "manifest.json").write_text("{not json")
    assert checkpoint.verify(newest) is not None
    with pytest.warns(UserWarning, match="skipping checkpoint .*step_0000002"):
        assert checkpoint.latest_valid(tmp_path).name == "step_0000001"
    with pytest.raises(UserError, match="cannot resume from"):
        checkpoint.load_checkpoint(newest)


def test_no_checkpoints(tmp_path):
    assert checkpoint.latest_valid(tmp_path / "missing") is None


def test_state_with_arbitrary_objects_is_not_unpickled(tmp_path):
    """A tampered state.pt that carries a pickled object is refused by weights_only loading."""
    path = _save(tmp_path, 3)
    torch.save({"evil": print}, path / "state.pt")
    # Re-sign the manifest as an attacker could: the checksum alone is not the protection.
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["state.pt"] = {"bytes": (path / "state.pt").stat().st_size,
                                     "sha256": checkpoint.file_sha256(path / "state.pt")}  # fmt: skip
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="refusing to unpickle"):
        checkpoint.load_checkpoint(path)
