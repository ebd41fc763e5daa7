"""Offline calibration on the last minutes of a recording, as a separate process.

The window runs ``python -m apps.live_demo._calibrate RECORDING MINUTES MODEL USER OUTPUT``
in a ``QProcess``: torch and the calibration's CPU work stay out of the window's process,
so they never hold the GIL that the acquisition and inference threads need, and closing
the window can simply end the process.

Steps: copy the last ``MINUTES`` of ``RECORDING`` (which may still be being written: the
reader sees its last flush) to a file beside it, then run ``emgstream calibrate`` on that
copy, which writes the personalized model file ``OUTPUT``.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["crop_recording"]


def crop_recording(src: str | Path, dst: str | Path, minutes: float) -> int:
    """Write the last ``minutes`` of the recording ``src`` to ``dst``; returns the samples."""
    from emgstream.io import RecordingWriter, read_recording
    from emgstream.sources import StreamInfo

    if not minutes > 0:
        raise ValueError(f"minutes must be positive, got {minutes!r}")
    head = read_recording(src, start=0, stop=0)
    total = int(head.meta["total_samples"])
    n = int(round(minutes * 60 * head.sample_rate))
    rec = read_recording(src, start=max(0, total - n))
    if rec.emg.shape[0] == 0:
        raise ValueError(f"the recording {src} holds no samples yet")
    device = head.meta.get("device") or {}
    info = StreamInfo(name=device.get("name", Path(src).stem), n_channels=rec.n_channels,
                      sample_rate=rec.sample_rate,
                      channel_names=tuple(device.get("channel_names", ())),
                      device_id=device.get("device_id", ""), kind=device.get("kind", ""))
    with RecordingWriter(dst, info, user=str(head.meta.get("user", "")),
                         session=str(head.meta.get("session", "")), overwrite=True) as writer:
        writer.append(rec.emg, rec.time)
    return int(rec.emg.shape[0])


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print("usage: python -m apps.live_demo._calibrate RECORDING MINUTES MODEL USER OUTPUT",
              file=sys.stderr)
        return 2
    recording, minutes, model, user, output = argv
    output = Path(output)
    crop = Path(recording).with_name(f"{Path(recording).stem}-last-{minutes}-min.h5")
    n = crop_recording(recording, crop, float(minutes))
    print(f"calibrating on the last {n} samples of {recording}", file=sys.stderr, flush=True)
    from emgstream.cli import main as cli

    return cli(["calibrate", "--from", str(crop), "--model", str(model), "--user", user,
                "--output", str(output)], standalone_mode=False) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
