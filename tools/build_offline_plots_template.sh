#!/usr/bin/env bash
# Rebuild .dvc/html/offline.html: DVC's plot page with vega, vega-lite and vega-embed inlined
# (from the npm registry), so `dvc plots show` renders with no network. DVC's default page loads
# them from a CDN and renders blank offline. The template has no {scripts} placeholder, so DVC
# never adds its CDN <script> tags. The libraries are BSD-3-Clause (licences kept in the page).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0 >/dev/null &&
  for f in *.tgz; do mkdir "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}"; done)
mkdir -p .dvc/html
python3 - "$work" > .dvc/html/offline.html <<'PY'
import pathlib, sys
work = pathlib.Path(sys.argv[1])
scripts = []
for package, build in [("vega-5.33.1", "vega.min.js"), ("vega-lite-5.23.0", "vega-lite.min.js"), ("vega-embed-6.29.0", "vega-embed.min.js")]:
    root = work / package / "package"
    meta = __import__("json").loads((root / "package.json").read_text())
    licence_file = root / "LICENSE"
    licence = licence_file.read_text().strip() if licence_file.exists() else f"{meta['name']} {meta['version']}: {meta['license']} licence"
    licence = licence.replace("*/", "* /")
    code = (root / "build" / build).read_text().replace("</script", "<\\/script")
    scripts.append(f"<!-- {package}, inlined from the npm registry -->\n<script>/*\n{licence}\n*/\n{code}\n</script>")
print("""<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>prunelab plots</title>
    %s
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>""" % "\n".join(scripts))
PY
echo "wrote .dvc/html/offline.html ($(wc -c < .dvc/html/offline.html) bytes)"
