#!/usr/bin/env bash
# Builds the DocC documentation of the public modules (Sources/<Module>/<Module>.docc and the
# `///` comments) with swift-docc-plugin, treating every DocC warning (an unresolved symbol
# link, an undocumented parameter, an ambiguous reference) as an error. Archives go to
# .build/docs/<Module>.doccarchive-style folders; exits non-zero on the first module that fails.
#
#   scripts/docs.sh                        # WebSocketCore, WebSockets, SwitchboardClient
#   scripts/docs.sh WebSockets             # one module
#   # browse one: swift package --disable-sandbox preview-documentation --target WebSockets
set -euo pipefail
cd "$(dirname "$0")/.."

modules=("$@")
if [ ${#modules[@]} -eq 0 ]; then
  modules=(WebSocketCore WebSockets SwitchboardClient)
fi

output=.build/docs
mkdir -p "$output"
for module in "${modules[@]}"; do
  echo "== $module"
  rm -rf "${output:?}/$module"
  swift package --allow-writing-to-directory "$output" \
    generate-documentation --target "$module" --warnings-as-errors --output-path "$output/$module"
done
echo "documentation in $output/: ${modules[*]}"
