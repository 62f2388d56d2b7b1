# Sourced by scripts/embed-schema.sh and scripts/embed-web.sh: writes a Swift enum holding
# text files as raw string literals, so the `switchboard` binary carries them.
# embed_files OUT HEADER ENUM DOC FIELD FILE...: OUT gets `enum ENUM` with
# `static let files: [(name: String, FIELD: String)]`, one entry per FILE (base name, text).
embed_files() {
  local out=$1 header=$2 enum=$3 doc=$4 field=$5
  shift 5
  {
    echo "// $header"
    echo ""
    echo "enum $enum {"
    echo "    /// $doc"
    echo "    static let files: [(name: String, $field: String)] = ["
    for f in "$@"; do
      if grep -q '"""#' "$f"; then echo "embed: $f contains \"\"\"#" >&2; exit 1; fi
      echo "        ("
      echo "            \"$(basename "$f")\","
      echo "            #\"\"\""
      sed 's/^/            /; s/^ *$//' "$f"
      echo "            \"\"\"#"
      echo "        ),"
    done
    echo "    ]"
    echo "}"
  } > "$out"
  echo "wrote $out"
}
