#!/bin/bash
# A second Docker engine reachable only over ssh, for tests/remote.rs (see tests/support/lab.rs).
#   lab.sh up ID OCTET     network namespace sclab-ID on bridge sclb-ID (10.231.OCTET.0/24),
#                          dockerd + sshd in it (port 22; port 2222 refuses socket forwarding);
#                          prints nothing, files under /tmp/stackctl-lab-ID
#   lab.sh down ID         stop and remove all of it (idempotent)
# Processes are started by lab.rs (so they die with the test process); this script only
# prepares the network and the files, and tears everything down.
set -u
cmd=$1 id=$2
ns=sclab-$id br=sclb$id vh=sclh$id vn=scln$id dir=/tmp/stackctl-lab-$id

down() {
  if [ -e "/var/run/netns/$ns" ]; then
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
  fi
  for f in "$dir"/docker.pid "$dir"/sshd.pid "$dir"/sshd-noforward.pid; do
    [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
  done
  # containerd and shims started by the node's dockerd live in the namespace (killed above);
  # wait for them to be gone before unmounting
  for _ in $(seq 50); do
    [ -e "/var/run/netns/$ns" ] && [ -n "$(ip netns pids "$ns" 2>/dev/null)" ] || break
    sleep 0.1
  done
  if [ -d "$dir" ]; then
    grep -o " $dir/[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  fi
  while iptables -D FORWARD -i "$br" -o "$br" -j ACCEPT 2>/dev/null; do :; done
  ip link del "$vh" 2>/dev/null
  ip link del "$br" 2>/dev/null
  ip netns del "$ns" 2>/dev/null
  rm -rf "$dir"
}

up() {
  local octet=$3 net=10.231.$3
  down
  set -e
  mkdir -p "$dir" /run/sshd
  chmod 700 "$dir"
  ip link add "$br" type bridge
  ip addr add "$net.1/24" dev "$br"
  ip link set "$br" up
  ip netns add "$ns"
  ip link add "$vh" type veth peer name "$vn"
  ip link set "$vh" master "$br" up
  ip link set "$vn" netns "$ns"
  ip -n "$ns" addr add "$net.2/24" dev "$vn"
  ip -n "$ns" link set "$vn" up
  ip -n "$ns" link set lo up
  iptables -I FORWARD -i "$br" -o "$br" -j ACCEPT
  echo '{}' > "$dir/daemon.json"
  ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key" -C lab-host
  ssh-keygen -q -t ed25519 -N '' -f "$dir/id_ed25519" -C lab-client
  cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
  cat > "$dir/sshd_config" <<CONF
ListenAddress $net.2
Port 22
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
SetEnv DOCKER_HOST=unix://$dir/docker.sock PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
MaxSessions 100
MaxStartups 100
CONF
  # A second sshd on port 2222 that refuses to forward sockets: the dial-stdio fallback.
  sed -e 's/^Port 22$/Port 2222/' -e "s#^PidFile .*#PidFile $dir/sshd-noforward.pid#" \
    "$dir/sshd_config" > "$dir/sshd_noforward_config"
  echo 'AllowStreamLocalForwarding no' >> "$dir/sshd_noforward_config"
  cat > "$dir/ssh_config" <<CONF
Host *
  IdentityFile $dir/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $dir/known_hosts
  StrictHostKeyChecking accept-new
  BatchMode yes
  LogLevel ERROR
CONF
  echo "$net.2" > "$dir/address"
}

case $cmd in
  up) up "$@" ;;
  down) down ;;
esac
