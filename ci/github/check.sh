#!/usr/bin/env bash
# Runs `portcullis check` for the GitHub Action (action.yml): the images,
# policy and tiers given, GitHub's own output (annotations, and the job
# summary appended to GITHUB_STEP_SUMMARY) on standard output, and each
# report asked for. Its exit code is the step's: 0 admitted, 1 denied,
# 2 evidence could not be gathered or bad input; it is also the step's
# output `exit-code`.
#
# Environment: PORTCULLIS_IMAGE (images, separated by spaces or new
# lines), PORTCULLIS_POLICY, PORTCULLIS_TIERS (comma-separated),
# PORTCULLIS_OUTPUTS (FORMAT=FILE, separated by commas or new lines).
set -euo pipefail

: "${PORTCULLIS_IMAGE:?the input image is required}"
: "${PORTCULLIS_POLICY:?the input policy is required}"
: "${PORTCULLIS_TIERS:?the input tiers is required}"

# Images: words, over one line or several.
read -r -a images <<<"${PORTCULLIS_IMAGE//$'\n'/ }"
args=(check "${images[@]}" --policy "$PORTCULLIS_POLICY" --tier "$PORTCULLIS_TIERS" --output github)
while IFS= read -r spec; do
  spec="${spec#"${spec%%[![:space:]]*}"}"
  spec="${spec%"${spec##*[![:space:]]}"}"
  if [[ -n "$spec" ]]; then
    args+=(--output "$spec")
  fi
done < <(printf '%s\n' "${PORTCULLIS_OUTPUTS:-}" | tr ',' '\n')

set +e
portcullis "${args[@]}"
code=$?
set -e
echo "exit-code=$code" >>"${GITHUB_OUTPUT:-/dev/null}"
exit "$code"
