"""Config loading: inheritance, overrides, unknown keys, types and ranges give clear errors."""

from functools import partial

import pytest

from fewshot_distill.config import ConfigError, load_config
from tests.conftest import REPO_ROOT

BASE = REPO_ROOT / "configs" / "base.yaml"
ONLINE = REPO_ROOT / "configs" / "online_v1.yaml"


def test_base_config_holds_the_paper_hyperparameters():
    cfg = load_config(BASE)
    assert cfg.model.name == "Qwen/Qwen3-1.7B"
    assert (cfg.data.dataset, cfg.data.subset, cfg.data.num_fewshot_examples) == ("openai/gsm8k", "main", 8)
    t = cfg.training
    assert (t.max_steps, t.warmup_steps, t.lr, t.weight_decay, t.grad_clip) == (1000, 50, 2e-4, 0.01, 1.0)
    assert (t.per_device_train_batch_size, t.gradient_accumulation_steps, t.save_steps, t.bf16) == (4, 4, 200, True)
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (16, 32, 0.05)
    assert cfg.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert cfg.distillation.lambda_distill == 0.0


def test_online_config_only_adds_distillation_on_top_of_base():
    base, online = load_config(BASE), load_config(ONLINE)
    assert (online.distillation.n_top_logits, online.distillation.lambda_distill) == (256, 0.5)
    assert online.distillation.alignment == "seed"
    assert online.training.lr == base.training.lr and online.lora == base.lora and online.data == base.data


def test_overrides_are_typed_and_applied_last():
    cfg = load_config(ONLINE, ["training.max_steps=4", "model.name=/tmp/tiny", "distillation.lambda_distill=1",
                               "lora.target_modules=[q_proj,v_proj]"])
    assert cfg.training.max_steps == 4 and cfg.model.name == "/tmp/tiny"
    assert cfg.distillation.lambda_distill == 1.0 and cfg.lora.target_modules == ["q_proj", "v_proj"]


@pytest.mark.parametrize("override, expected", [
    ("training.max_stepz=4", "Did you mean 'training.max_steps'"),
    ("trainng.lr=1", "Unknown config key 'trainng'"),
    ("distillation.lambda=0.5", "Unknown config key 'distillation.lambda'"),
])
def test_unknown_key_is_named(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(BASE, [override])


@pytest.mark.parametrize("override, expected", [
    ("training.max_steps=abc", "training.max_steps"),
    ("distillation.lambda_distill=-0.5", "lambda_distill must be >= 0"),
    ("training.per_device_train_batch_size=0", "effective batch of 0"),
    ("training.gradient_accumulation_steps=0", "effective batch of 0"),
    ("distillation.n_top_logits=-1", "n_top_logits must be >= 0"),
    ("distillation.alignment=middle", "alignment must be one of"),
    ("distillation.teacher_cache=redis", "teacher_cache must be one of"),
    ("lora.dropout=1.5", "lora.dropout"),
    ("data.invalid_rows=ignore", "invalid_rows must be one of"),
    ("training.max_steps", "key=value"),
])
def test_bad_values_are_rejected_with_the_key(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(BASE, [override])


def test_unknown_key_in_a_yaml_file_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"base_config: {ONLINE}\ndistillation:\n  n_top_logit: 128\n")
    with pytest.raises(ConfigError, match=r"distillation.n_top_logit.*Did you mean 'distillation.n_top_logits'"):
        load_config(bad)


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="Config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_training_script_reports_unknown_key_without_traceback(capsys):
    """The script's own entry (`exit_on_user_error(main)`, as under `__main__`), in-process: exit status 2
    (argparse's) and one error line naming the fix; no other exception escapes, so no traceback is printed."""
    from fewshot_distill.training.loop import exit_on_user_error
    from fewshot_distill.train import main

    with pytest.raises(SystemExit) as stop:
        exit_on_user_error(partial(main, ["--config", str(ONLINE), "training.max_stepz=4"]))
    assert stop.value.code == 2
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Did you mean 'training.max_steps'" in errors[0], stderr
    assert "Traceback" not in stderr
