import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dcgan.config import Config, load_config, to_dict, to_flat_values
from dcgan.config.describe import as_markdown, reference
from dcgan.errors import UserError

SECTIONS = ("data", "model", "optim", "train", "log", "checkpoint", "fault", "eval")

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_default_recipe_file_equals_builtin_defaults():
    assert to_dict(load_config(CONFIGS / "mnist.yaml")) == to_dict(Config())


@pytest.mark.parametrize(
    "name", ["mnist.yaml", "seed_faithful.yaml", "smoke.yaml", "fashion_mnist.yaml", "folder_rgb64.yaml"]
)
def test_shipped_configs_load(name):
    load_config(CONFIGS / name)


def test_seed_faithful_is_the_tutorial():
    cfg = load_config(CONFIGS / "seed_faithful.yaml")
    assert (cfg.train.g_first, cfg.train.real_label, cfg.train.d_loss_scale) == (True, 0.9, 0.5)
    assert cfg.data.pixel_range == "unit" and cfg.train.ema_decay == 0  # samples the last iterate
    assert cfg.train.batch_size == 32 and cfg.train.epochs == 20


def test_overrides_are_typed():
    cfg = load_config(None, ["train.epochs=3", "optim.lr_g=1e-3", "train.max_steps=null", "optim.betas=[0.0,0.9]"])
    assert cfg.train.epochs == 3
    assert cfg.optim.lr_g == pytest.approx(1e-3)
    assert cfg.train.max_steps is None
    assert cfg.optim.betas == (0.0, 0.9)
    assert load_config(None, ["train.max_steps=7"]).train.max_steps == 7
    # Strings stay strings on the command line, even those YAML 1.1 would read as booleans.
    assert load_config(None, ["train.mixed_precision=no"]).train.mixed_precision == "no"
    assert load_config(None, ["output_dir=123", "resume=on"]).output_dir == "123"


def test_unquoted_no_in_a_yaml_file_explains_itself(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  mixed_precision: no\n")
    with pytest.raises(UserError, match='YAML reads unquoted no/off as false: write "no"'):
        load_config(path)


def test_override_wins_over_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": 4, "batch_size": 8}}))
    cfg = load_config(path, ["train.epochs=5"])
    assert (cfg.train.epochs, cfg.train.batch_size) == (5, 8)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batchsize=4", "unknown config key train.batchsize (did you mean train.batch_size?)"),
        ("trian.epochs=4", "unknown config key trian"),
        ("train.epochs=many", "config key train.epochs: expected an integer, got 'many'"),
        ("train.epochs=2.5", "config key train.epochs: expected an integer"),
        ("train.cpu=yes please", "config key train.cpu: expected true or false"),
        ("train.epochs=0", "config key train.epochs: must be >= 1"),
        ("train.batch_size=0", "config key train.batch_size: must be >= 1"),
        ("train.max_steps=-1", "config key train.max_steps: must be >= 1 or null"),
        ("optim.lr_d=0", "config key optim.lr_d: must be > 0"),
        ("optim.lr_g=-1e-4", "config key optim.lr_g: must be > 0"),
        ("optim.betas=[0.5]", "config key optim.betas: expected a list of 2 values"),
        ("train.mixed_precision=fp8", "config key train.mixed_precision: must be one of auto, no, fp16, bf16"),
        ("log.tracker=mlflow", "config key log.tracker: must be one of wandb, tensorboard, none"),
        ("data.name=cifar10", "config key data.name: must be one of mnist, fashion_mnist, folder"),
        ("train=3", "config key train: expected a section of keys"),
        ("train.epochs.x=3", "config key train.epochs: expected an integer"),
        ("epochs", "override 'epochs' is not KEY=VALUE"),
        ("train.loss=wgan", "config key train.loss: must be one of bce, hinge, least_squares"),
        (
            "train.diffaugment=[flip]",
            "config key train.diffaugment: unknown ['flip']; choose from xflip, color, translation",
        ),
        ("train.r1_every=0", "config key train.r1_every: must be >= 1"),
        ("optim.lr_scaling=cubic", "config key optim.lr_scaling: must be one of none, sqrt, linear"),
        ("optim.warmup_steps=-1", "config key optim.warmup_steps: must be >= 0"),
        ("eval.every_steps=-5", "config key eval.every_steps: must be >= 0"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(UserError) as err:
        load_config(None, [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochs: 3\n  batch_size: [1,\n")
    with pytest.raises(UserError, match=r"bad.yaml is not valid YAML at line \d+"):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_top_level_must_be_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="must hold a mapping"):
        load_config(path)


def test_every_key_and_section_is_documented_and_docs_config_md_is_current():
    sections = reference()
    assert [s.name for s in sections] == ["", *(f.name for f in dataclasses.fields(Config) if f.name in SECTIONS)]
    for section in sections:
        assert section.doc, f"section {section.name or 'top level'} has no docstring"
        for key in section.keys:
            assert key.doc, f"config key {key.key} has no docstring in dcgan/config/schema.py"
    assert sum(len(s.keys) for s in sections) == len(to_flat_values(Config()))
    assert (CONFIGS.parent / "docs" / "config.md").read_text() == as_markdown(), (
        "docs/config.md is stale: dcgan config --describe --markdown > docs/config.md"
    )


def test_describe_prints_every_key_with_its_type_default_and_policy():
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from dcgan.commands.cli import main; main(['config', '--describe']); "
         "assert 'torch' not in sys.modules"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "  train.batch_size (int) = 32 [run]\n      Per process: the global batch" in proc.stdout
    assert "  optim.betas ([float, float]) = [0.5, 0.999]\n" in proc.stdout
    assert "  train.max_steps (int or null) = null\n" in proc.stdout
    assert all(f"  {key} (" in proc.stdout for key in to_flat_values(Config()))
