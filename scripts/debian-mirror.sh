# Sourced by scripts/dev-env and scripts/build-buildkitd: the machine's own Debian mirror,
# read from its apt configuration (deb822 or one-line form), never written into the repo.
# The sourcing script defines die().
debian_mirror() {
  local uri
  uri=$(awk '
    /^URIs:/ { uris = $2 }
    /^Suites:/ { for (i = 2; i <= NF; i++) if ($i !~ /-security$/ && uris != "") { print uris; exit } }
  ' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  if [ -z "$uri" ]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
  fi
  [ -n "$uri" ] || die "no Debian mirror found in /etc/apt; cannot fetch Debian's trixie packages"
  printf '%s\n' "${uri%/}"
}
