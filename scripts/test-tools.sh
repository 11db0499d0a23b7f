#!/usr/bin/env bash
# Installs the Debian tools the tests use as real peers when they are missing: swaks (an SMTP client),
# Postfix's smtp-sink/smtp-source (downstream server and load source). The Postfix daemon itself is
# never started. Needs root (apt-get) only when something is missing.
set -euo pipefail
need=()
command -v swaks >/dev/null 2>&1 || need+=(swaks)
{ [ -x /usr/sbin/smtp-sink ] && [ -x /usr/sbin/smtp-source ]; } || need+=(postfix)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "mailfleet: the tests need ${need[*]} (Debian packages); install them or run as root with apt-get" >&2
  exit 1
fi
echo "mailfleet: installing ${need[*]} from Debian" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# postfix's postinst must not start a mail system on the machine.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1; fi
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
[ "$created_policy" = 1 ] && rm -f "$policy"
exit 0
