"""The sandbox image itself, started with testcontainers (its Ryuk reaper cannot be pulled here: it is disabled in
conftest and the container is removed by the context manager)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from testcontainers.core.container import DockerContainer

from runner.sandbox.image import base_tag, image_inputs_dir, image_tag


def test_image_has_the_tools_and_a_non_root_default(sandbox_image: str) -> None:
    assert os.environ["TESTCONTAINERS_RYUK_DISABLED"] == "true"
    assert sandbox_image == image_tag()
    with DockerContainer(sandbox_image).with_command("sleep infinity") as container:
        wrapped = container.get_wrapped_container()
        code, output = wrapped.exec_run(["bash", "-c", "id -u; command -v git rg patch python3 timeout; "
                                                       "python3 -m pytest --version; ls /opt/smol/bin"])
        text = output.decode()
        assert code == 0, text
        lines = text.split()
        assert lines[0] == "65534", "the image's default user must not be root"
        for tool in ("/usr/bin/git", "/usr/bin/rg", "/usr/bin/patch", "/usr/bin/python3", "/usr/bin/timeout"):
            assert tool in text
        assert "pytest" in text and "smol-exec" in text and "smol-diff" in text


def test_the_tag_follows_the_inputs(tmp_path: Path) -> None:
    assert image_tag().startswith("smol-sandbox:") and base_tag().startswith("smol-sandbox-base:")
    inputs = tmp_path / "inputs"
    shutil.copytree(image_inputs_dir() / "sandbox_image", inputs / "sandbox_image")
    shutil.copy(image_inputs_dir() / "Dockerfile.sandbox", inputs / "Dockerfile.sandbox")
    tags = [(base_tag(inputs), image_tag(inputs))]
    assert tags[0] == (base_tag(), image_tag()), "a copy of the inputs names the same image"
    helper = inputs / "sandbox_image" / "bin" / "smol-diff"
    helper.write_text(helper.read_text() + "\n# changed\n")
    tags.append((base_tag(inputs), image_tag(inputs)))  # a helper changed: new image, same base
    helper.chmod(helper.stat().st_mode ^ 0o111)
    tags.append((base_tag(inputs), image_tag(inputs)))  # only its mode changed
    packages = inputs / "sandbox_image" / "packages.txt"
    packages.write_text(packages.read_text() + "jq\n")
    tags.append((base_tag(inputs), image_tag(inputs)))  # a package more: new base and new image
    assert tags[1][0] == tags[0][0] and tags[2][0] == tags[0][0] and tags[3][0] != tags[0][0]
    assert len({image for _, image in tags}) == 4
