#!/usr/bin/env bash
# Installs FFmpeg's command-line tools (ffmpeg, ffprobe), which `rtdetr detect`/`track` use for video and the video
# tests need: Debian 12's ffmpeg 5.1 packages through apt (as root, or with sudo). Does nothing when both are there.
set -euo pipefail
if command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "install-ffmpeg: no apt-get here; install FFmpeg (ffmpeg and ffprobe) with this system's package manager" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-ffmpeg: apt-get needs root; run as root or install sudo" >&2; exit 1; }
  sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
ffmpeg -version | head -1
