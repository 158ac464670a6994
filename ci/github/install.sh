#!/usr/bin/env bash
# Installs portcullis for the GitHub Action (action.yml): the release's
# binary for this runner (Linux x86_64 or aarch64), checked against the
# release's SHA-256 file, or, with version `source`, built with cargo from
# the action's own source. The directory holding it is added to GITHUB_PATH.
#
# Environment: PORTCULLIS_VERSION (`0.1.0`, `v0.1.0`, `source`; empty: the
# version of the action's own Cargo.toml, so that `uses: …@v0.1.0` runs
# 0.1.0), GITHUB_ACTION_PATH, RUNNER_TEMP, GITHUB_PATH, and
# PORTCULLIS_RELEASES (where releases are downloaded from; GitHub's by
# default).
set -euo pipefail

action_path="${GITHUB_ACTION_PATH:?GITHUB_ACTION_PATH is not set: run this as a step of the action}"
root="${RUNNER_TEMP:-${TMPDIR:-/tmp}}/portcullis"
releases="${PORTCULLIS_RELEASES:-https://github.com/portcullis-dev/portcullis/releases/download}"
version="${PORTCULLIS_VERSION:-}"
if [[ -z "$version" ]]; then
  version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$action_path/Cargo.toml" | head -n 1)"
fi
version="${version#v}"
if [[ -z "$version" ]]; then
  echo "::error title=portcullis::no version given, and none found in $action_path/Cargo.toml"
  exit 2
fi
mkdir -p "$root/bin"

if [[ "$version" == source ]]; then
  # The action's own checkout, built as the release is (Cargo.lock, release profile).
  cargo install --locked --quiet --path "$action_path" --root "$root" --bin portcullis
else
  case "$(uname -s)/$(uname -m)" in
    Linux/x86_64) target=x86_64-unknown-linux-gnu ;;
    Linux/aarch64 | Linux/arm64) target=aarch64-unknown-linux-gnu ;;
    *)
      echo "::error title=portcullis::no release of portcullis for $(uname -s) $(uname -m); use version: source to build it"
      exit 2
      ;;
  esac
  archive="portcullis-${version}-${target}.tar.gz"
  download="$(mktemp -d)"
  for file in "$archive" "$archive.sha256"; do
    curl --fail --silent --show-error --location --retry 3 --output "$download/$file" "$releases/v${version}/$file"
  done
  # The sum file names the archive: `<hex>  portcullis-….tar.gz`.
  (cd "$download" && sha256sum --check --strict "$archive.sha256")
  tar -xzf "$download/$archive" -C "$root/bin" portcullis
  rm -rf "$download"
fi

"$root/bin/portcullis" --version
echo "$root/bin" >>"${GITHUB_PATH:?GITHUB_PATH is not set: run this as a step of the action}"
