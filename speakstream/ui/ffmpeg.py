"""Gradio's streaming audio needs an `ffmpeg` on PATH; the imageio-ffmpeg package ships one."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


def ensure_ffmpeg(link_dir: Path) -> str | None:
    """Path of the ffmpeg Gradio will run: the system's, else imageio-ffmpeg's, linked into ``link_dir``.

    imageio-ffmpeg names its binary after its platform and version, so a link called
    ``ffmpeg`` is made and its folder put first on PATH for this process.
    """
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        binary = Path(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError) as error:
        log.warning("No ffmpeg on PATH and none from imageio-ffmpeg (%s): speech cannot be streamed.", error)
        return None
    link_dir.mkdir(parents=True, exist_ok=True)
    link = link_dir / "ffmpeg"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(binary)
    os.environ["PATH"] = f"{link_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    log.info("Using the ffmpeg shipped by imageio-ffmpeg (%s)", binary.name)
    return str(link)
