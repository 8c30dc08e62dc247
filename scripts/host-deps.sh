#!/usr/bin/env bash
# Install and start what gpufleet's demo and tests need on a Debian 12 host (run as root):
#   host-deps.sh python   -> only what `python3 -m venv` needs
#   host-deps.sh          -> that, plus docker.io (daemon started) and debootstrap for the lab, and the
#                            tools the tests run (gpg, promtool, aria2c, nginx with njs, cmake/gcc/g++ ...)
set -euo pipefail

need_apt=()
fresh_nginx=false
apt_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need_apt+=(python3-venv python3-pip)
fi
if [[ "${1:-all}" != "python" ]]; then
  command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
  apt_installed iproute2 || need_apt+=(iproute2)
  # gpg signs offline bundles; gpgv and dpkg-deb check and index them.
  command -v gpg >/dev/null 2>&1 || need_apt+=(gnupg)
  command -v gpgv >/dev/null 2>&1 || need_apt+=(gpgv)
  # promtool (from Debian's prometheus package) validates gpufleet verify's textfile output in the tests.
  command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
  # ssh and ssh-keygen: the lab's SSH mode (Ansible over OpenSSH, host keys pinned).
  command -v ssh-keygen >/dev/null 2>&1 || need_apt+=(openssh-client)
  # aria2c: the model fan-out engine (model_metalink); its tests run it against local HTTP servers.
  command -v aria2c >/dev/null 2>&1 || need_apt+=(aria2)
  # nginx with its JavaScript module (njs): the serving front's tests (llm_serve) start their own nginx.
  if ! apt_installed nginx; then need_apt+=(nginx); fresh_nginx=true; fi
  apt_installed libnginx-mod-http-js || need_apt+=(libnginx-mod-http-js)
  # cmake, gcc and g++: 'gpufleet lab engine-wheel' compiles llama.cpp into the llama-cpp-python wheel
  # the lab bundle carries (the package index has only its sdist).
  command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
  command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
  command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
fi

if ((${#need_apt[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "gpufleet: missing host packages: ${need_apt[*]} — run as root, or: sudo apt-get install ${need_apt[*]}" >&2
    exit 1
  fi
  echo "gpufleet: installing host packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

[[ "${1:-all}" == "python" ]] && exit 0

# Debian starts the nginx it has just installed (its default site on port 80); the tests need only
# the binary and start their own instances, so an nginx installed here is stopped and not enabled.
if [[ "$fresh_nginx" == true ]] && command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  echo "gpufleet: stopping and disabling the nginx.service just installed (the tests run their own nginx)"
  systemctl disable --now nginx >/dev/null 2>&1 || true
fi

if ! docker info >/dev/null 2>&1; then
  if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    echo "gpufleet: starting docker.service"
    systemctl start docker
  else
    echo "gpufleet: no systemd here; starting dockerd in the background (log: /var/log/gpufleet-dockerd.log)"
    nohup dockerd >/var/log/gpufleet-dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    echo "gpufleet: the docker daemon did not come up within 60 s; see /var/log/gpufleet-dockerd.log" >&2
    exit 1
  fi
fi
echo "gpufleet: host ready (docker $(docker version --format '{{.Server.Version}}' 2>/dev/null), debootstrap $(dpkg-query -W -f='${Version}' debootstrap 2>/dev/null))"
