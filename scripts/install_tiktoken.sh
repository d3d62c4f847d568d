#!/usr/bin/env bash
# Fill tiktoken's offline cache from the npm package js-tiktoken (same rank tables, verified by
# hash). Optional: without it the project uses a conservative token counter.
set -uo pipefail
PY="${1:-.venv/bin/python}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if ! command -v npm >/dev/null 2>&1; then
  echo "install_tiktoken: npm not found; using the conservative token counter" >&2
  exit 0
fi
if (cd "$tmp" && npm pack --silent js-tiktoken@1.0.21 >/dev/null 2>&1 && tar xzf js-tiktoken-*.tgz); then
  "$PY" -m proposals.tokens install "$tmp/package" || echo "install_tiktoken: conversion failed; conservative counter in use" >&2
else
  echo "install_tiktoken: could not fetch js-tiktoken; using the conservative token counter" >&2
fi
exit 0
