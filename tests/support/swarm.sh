#!/bin/bash
# A three-node Docker Swarm for tests/swarm.rs (see tests/support/swarm.rs).
#   swarm.sh up ID OCTET   bridge swb-ID (10.232.OCTET.0/24, the host is .1) and network
#                          namespaces swl-ID-1..3 (.2 .. .4) with their files under
#                          /tmp/stackctl-swarm-ID/N; prints nothing
#   swarm.sh down ID       stop and remove all of it (idempotent)
# The daemons (and the registry on the bridge address) are started by swarm.rs, so they die
# with the test process; this script only prepares the network and the files, and tears
# everything down.
set -u
cmd=$1 id=$2
br=swb$id dir=/tmp/stackctl-swarm-$id

down() {
  for n in 1 2 3; do
    ns=swl-$id-$n
    if [ -e "/var/run/netns/$ns" ]; then
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    fi
    [ -f "$dir/$n/docker.pid" ] && kill -9 "$(cat "$dir/$n/docker.pid")" 2>/dev/null
  done
  [ -f "$dir/registry.pid" ] && kill -9 "$(cat "$dir/registry.pid")" 2>/dev/null
  for n in 1 2 3; do
    ns=swl-$id-$n
    for _ in $(seq 50); do
      [ -e "/var/run/netns/$ns" ] && [ -n "$(ip netns pids "$ns" 2>/dev/null)" ] || break
      sleep 0.1
    done
  done
  if [ -d "$dir" ]; then
    grep -o " $dir/[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  fi
  while iptables -D FORWARD -i "$br" -o "$br" -j ACCEPT 2>/dev/null; do :; done
  for n in 1 2 3; do
    ip link del "swh${id}n$n" 2>/dev/null
    ip netns del "swl-$id-$n" 2>/dev/null
  done
  ip link del "$br" 2>/dev/null
  rm -rf "$dir"
}

up() {
  local net=10.232.$3
  down
  set -e
  mkdir -p "$dir"
  chmod 700 "$dir"
  ip link add "$br" type bridge
  ip addr add "$net.1/24" dev "$br"
  ip link set "$br" up
  iptables -I FORWARD -i "$br" -o "$br" -j ACCEPT
  for n in 1 2 3; do
    ns=swl-$id-$n vh=swh${id}n$n vn=swn${id}n$n
    mkdir -p "$dir/$n"
    ip netns add "$ns"
    ip link add "$vh" type veth peer name "$vn"
    ip link set "$vh" master "$br" up
    ip link set "$vn" netns "$ns"
    ip -n "$ns" addr add "$net.$((n + 1))/24" dev "$vn"
    ip -n "$ns" link set "$vn" up
    ip -n "$ns" link set lo up
    # the registry on the bridge is plain HTTP: each node's own config says so
    printf '{"insecure-registries": ["%s.1:5000"]}\n' "$net" > "$dir/$n/daemon.json"
  done
}

case $cmd in
  up) up "$@" ;;
  down) down ;;
esac
