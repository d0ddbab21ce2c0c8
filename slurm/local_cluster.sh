#!/usr/bin/env bash
# A one-node SLURM cluster on this Debian machine, without systemd (containers, VMs, CI runners):
# munge, MariaDB (127.0.0.1 only), slurmdbd (accounting, so sacct and submitit see COMPLETED / CANCELLED /
# TIMEOUT), slurmctld and slurmd, one partition `debug`.
#
#   sudo slurm/local_cluster.sh [start]   # install what is missing, start what is down, wait until usable
#   sudo slurm/local_cluster.sh status    # each daemon, sinfo, the registered cluster
#   sudo slurm/local_cluster.sh stop      # slurmd, slurmctld, slurmdbd, MariaDB, munged
#
# Idempotent: with everything running and the configuration unchanged, `start` returns in about a second.
# Environment: LB_SLURM_CLUSTER (cluster name, default lorabench), LB_SLURM_FORCE=1 (overwrite a slurm.conf
# this script did not write; the old one is kept as .bak), LB_SLURM_TIMEOUT (seconds per daemon, default 60).
# See slurm/README.md.
set -euo pipefail

CLUSTER=${LB_SLURM_CLUSTER:-lorabench}
TIMEOUT=${LB_SLURM_TIMEOUT:-60}
NODE=$(hostname -s)
ETC=/etc/slurm
LOGDIR=/var/log/slurm
MARK="# Written by lorabench slurm/local_cluster.sh"
DB=slurm_acct_db
DBUSER=slurm
MYSQL_LOG=/var/log/mysql/error.log
MYSQL_SOCK=/run/mysqld/mysqld.sock
MUNGE_LOG=/var/log/munge/munged.log
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)

say() { printf 'local_cluster: %s\n' "$*"; }
die() { printf 'local_cluster: ERROR: %s\n' "$*" >&2; exit 1; }

# Fail naming the daemon's log, with its tail: the reason is almost always there.
fail_daemon() {
  local name=$1 log=$2
  {
    printf 'local_cluster: ERROR: %s did not come up within %ss; its log is %s\n' "$name" "$TIMEOUT" "$log"
    if [[ -r $log ]]; then printf -- '--- last lines of %s ---\n' "$log"; tail -n 20 "$log"; fi
  } >&2
  exit 1
}

# Poll a command until it succeeds (returns 1 after TIMEOUT seconds).
wait_for() {
  local deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# ---------------------------------------------------------------------------------------------- checks
preflight() {
  [[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts system daemons)"
  [[ -r /proc/meminfo ]] || die "/proc is not mounted"
  command -v apt-get >/dev/null && command -v dpkg-query >/dev/null \
    || die "needs a Debian-like system with apt-get and dpkg"
}

# ---------------------------------------------------------------------------------------------- install
missing_packages() {
  local p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
  done
}

install_packages() {
  local missing
  missing=$(missing_packages)
  [[ -z $missing ]] && return 0
  say "installing:" $missing
  # Stop the packages' maintainer scripts from starting daemons themselves (no init system here, and we
  # start them with our own configuration). Only ours is removed again; an existing policy stays.
  local policy=/usr/sbin/policy-rc.d ours=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; ours=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null 9>&- || die "apt-get update failed (see its messages above)"
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $missing >/dev/null 9>&- \
    || die "apt-get install $missing failed (see its messages above)"
  if [[ $ours == 1 ]]; then rm -f "$policy"; trap - EXIT; fi
}

# ---------------------------------------------------------------------------------------------- config
real_memory_mb() {
  # MemTotal minus ~2 GB for the OS and the daemons, so a job asking for "all of it" still fits.
  awk '/^MemTotal:/ { m = int($2 / 1024) - 2048; if (m < 512) m = int($2 / 2048); print m }' /proc/meminfo
}

render_slurm_conf() {
  cat <<EOF
$MARK; edits are overwritten on the next start.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
# A requeued job may start again only cred_expire+1 s after its previous run ended (SLURM default 120 s).
# 20 s keeps requeue tests short and is still ample for a local launch; slurmctld must be restarted (not
# just reconfigured) for it to take effect. See slurm/README.md.
AuthInfo=cred_expire=20
# Daemons run as root: one machine, no separate slurm user to manage.
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
# No cgroup hierarchy to rely on in a container: track processes by parent pid, bind no CPUs.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
# CPUs are the consumable resource; --mem is checked against RealMemory but not reserved, so several
# small jobs share the node as they would share a real node's memory.
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
# Pending jobs are looked at every few seconds (defaults 60 s / 30 s), so tests do not wait a minute.
SchedulerParameters=sched_interval=5,bf_interval=5
# A node that rebooted or restarted its slurmd comes back by itself.
ReturnToService=2
# scontrol requeue and submitit's preemption/timeout handling need requeueable batch jobs.
JobRequeue=1
# SIGTERM, then SIGKILL after KillWait seconds (30 is SLURM's default, stated because tests rely on it).
KillWait=30
# Finished jobs stay visible to squeue/scontrol for 5 min; sacct (slurmdbd) keeps them for good.
MinJobAge=300
InactiveLimit=0
# No mail on this machine (silences "Configured MailProg is invalid").
MailProg=/bin/true
SlurmctldTimeout=120
SlurmdTimeout=300
# Accounting: job states (COMPLETED, CANCELLED, TIMEOUT, ...) for sacct and submitit.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$(real_memory_mb) State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=7-00:00:00 State=UP
EOF
}

render_slurmdbd_conf() {
  local pass=$1
  cat <<EOF
$MARK; edits are overwritten on the next start.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=/run/slurmdbd.pid
LogFile=$LOGDIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=$DB
StorageUser=$DBUSER
StoragePass=$pass
EOF
}

# Write $2 to $1 when it differs; returns 0 when the file changed.
write_if_changed() {
  local path=$1 content=$2 mode=$3
  if [[ -f $path ]] && [[ "$(cat "$path")" == "$content" ]]; then
    chmod "$mode" "$path"; return 1
  fi
  if [[ -f $path ]] && ! head -n1 "$path" | grep -qF "$MARK"; then
    [[ ${LB_SLURM_FORCE:-0} == 1 ]] \
      || die "$path exists and was not written by this script; set LB_SLURM_FORCE=1 to replace it (kept as $path.bak)"
    cp -p "$path" "$path.bak"
  fi
  (umask 077; printf '%s\n' "$content" >"$path.tmp")
  chmod "$mode" "$path.tmp"; mv "$path.tmp" "$path"
  say "wrote $path"
  return 0
}

db_password() {
  # Keep the password of an existing slurmdbd.conf; otherwise a random one (the DB listens on 127.0.0.1).
  local f=$ETC/slurmdbd.conf
  if [[ -r $f ]] && grep -q '^StoragePass=' "$f"; then sed -n 's/^StoragePass=//p' "$f"; return; fi
  head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9'
}

# ---------------------------------------------------------------------------------------------- daemons
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
  # munged refuses a log file not owned by the munge user; create it first so our redirect cannot.
  touch "$MUNGE_LOG"
  chown munge:munge /run/munge /var/log/munge /var/lib/munge "$MUNGE_LOG"
  chmod 0755 /run/munge
  if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --keyfile=/etc/munge/munge.key
  fi
  chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
  if pid_alive /run/munge/munged.pid && munge_ok; then return; fi
  say "starting munged"
  rm -f /run/munge/munged.pid
  # munged forks into the background itself; it must run as the munge user.
  su -s /bin/sh munge -c "/usr/sbin/munged --log-file=$MUNGE_LOG" </dev/null >>"$MUNGE_LOG" 2>&1 9>&- \
    || fail_daemon munged "$MUNGE_LOG"
  wait_for munge_ok || fail_daemon munged "$MUNGE_LOG"
}

mysql_ok() { mariadb-admin --socket="$MYSQL_SOCK" ping >/dev/null 2>&1; }

start_mariadb() {
  mkdir -p /run/mysqld /var/log/mysql
  chown mysql:mysql /run/mysqld /var/log/mysql
  if [[ ! -d /var/lib/mysql/mysql ]]; then
    say "initializing the MariaDB data directory"
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  fi
  if ! mysql_ok; then
    say "starting MariaDB (127.0.0.1 only)"
    # mysqld_safe stays in the foreground (it restarts mysqld if it dies): detach it from this shell and
    # from the caller's pipes, or a caller that captures our output would wait on it forever.
    setsid mysqld_safe --user=mysql --bind-address=127.0.0.1 --socket="$MYSQL_SOCK" \
      --pid-file=/run/mysqld/mysqld.pid --skip-syslog --log-error="$MYSQL_LOG" \
      --innodb-lock-wait-timeout=900 </dev/null >/dev/null 2>&1 9>&- &
    wait_for mysql_ok || fail_daemon MariaDB "$MYSQL_LOG"
  fi
  local pass=$1
  # Root connects through the unix socket (Debian's default unix_socket auth for root).
  mariadb --socket="$MYSQL_SOCK" <<EOF
CREATE DATABASE IF NOT EXISTS $DB;
CREATE USER IF NOT EXISTS '$DBUSER'@'localhost' IDENTIFIED BY '$pass';
ALTER USER '$DBUSER'@'localhost' IDENTIFIED BY '$pass';
GRANT ALL ON $DB.* TO '$DBUSER'@'localhost';
EOF
}

dbd_ok() { timeout 5 sacctmgr -n -P list cluster format=cluster >/dev/null 2>&1; }

start_slurmdbd() {
  local restart=$1
  if [[ $restart == 1 ]] && pid_alive /run/slurmdbd.pid; then stop_pidfile slurmdbd /run/slurmdbd.pid; fi
  if ! pid_alive /run/slurmdbd.pid; then
    say "starting slurmdbd"
    rm -f /run/slurmdbd.pid
    slurmdbd </dev/null >>"$LOGDIR/slurmdbd.log" 2>&1 9>&- || fail_daemon slurmdbd "$LOGDIR/slurmdbd.log"
  fi
  wait_for dbd_ok || fail_daemon slurmdbd "$LOGDIR/slurmdbd.log"
}

cluster_registered() {
  timeout 5 sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"
}

register_cluster() {
  cluster_registered && return
  say "registering cluster $CLUSTER with slurmdbd"
  timeout 20 sacctmgr -i add cluster "$CLUSTER" >/dev/null
  cluster_registered || die "sacctmgr does not list cluster $CLUSTER; see $LOGDIR/slurmdbd.log"
}

ctld_ok() { timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; }

start_slurmctld() {
  local restart=$1
  if [[ $restart == 1 ]] && pid_alive /run/slurmctld.pid; then stop_pidfile slurmctld /run/slurmctld.pid; fi
  if ! pid_alive /run/slurmctld.pid; then
    say "starting slurmctld"
    rm -f /run/slurmctld.pid
    slurmctld </dev/null >>"$LOGDIR/slurmctld.log" 2>&1 9>&- || fail_daemon slurmctld "$LOGDIR/slurmctld.log"
  fi
  wait_for ctld_ok || fail_daemon slurmctld "$LOGDIR/slurmctld.log"
}

# The node's state as sinfo reports it (idle, mixed, allocated, down*, drained, ...).
node_state() { timeout 5 sinfo -h -n "$NODE" -o '%T' 2>/dev/null | head -n1; }

# Usable: idle, or running jobs. Not down, drained, unknown or not responding (a trailing *).
node_usable() {
  local s; s=$(node_state)
  [[ $s =~ ^(idle|mixed|allocated|completing)$ ]]
}

# slurmd itself answers (slurmctld's view of the node lags: it marks a dead slurmd down only after
# SlurmdTimeout, so "idle" alone does not prove a slurmd runs).
slurmd_ok() { pid_alive /run/slurmd.pid && timeout 5 scontrol show slurmd 2>/dev/null | grep -q '^Slurmd PID'; }

start_slurmd() {
  local restart=$1
  if [[ $restart == 1 ]] && pid_alive /run/slurmd.pid; then stop_pidfile slurmd /run/slurmd.pid; fi
  if ! pid_alive /run/slurmd.pid; then
    say "starting slurmd"
    rm -f /run/slurmd.pid
    slurmd -N "$NODE" </dev/null >>"$LOGDIR/slurmd.log" 2>&1 9>&- || fail_daemon slurmd "$LOGDIR/slurmd.log"
  fi
  wait_for slurmd_ok || fail_daemon slurmd "$LOGDIR/slurmd.log"
  local deadline=$((SECONDS + TIMEOUT)) s
  until node_usable; do
    s=$(node_state)
    # A node left drained or down by an earlier run (e.g. "Kill task failed", "Not responding") is
    # put back into service once its slurmd answers.
    if [[ $s =~ ^(drained|draining|down)$ ]]; then
      scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
    fi
    ((SECONDS < deadline)) || fail_daemon "slurmd (node $NODE is '${s:-?}', not idle)" "$LOGDIR/slurmd.log"
    sleep 0.5
  done
}

# ---------------------------------------------------------------------------------------------- stop
stop_pidfile() {
  local name=$1 pidfile=$2 pid
  pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid=$(cat "$pidfile")
  say "stopping $name (pid $pid)"
  kill -TERM "$pid"
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then say "$name did not stop in 30 s; sending SIGKILL"; kill -KILL "$pid"; fi
    sleep 0.2
  done
  rm -f "$pidfile"
}

stop_all() {
  stop_pidfile slurmd /run/slurmd.pid
  stop_pidfile slurmctld /run/slurmctld.pid
  stop_pidfile slurmdbd /run/slurmdbd.pid
  if mysql_ok; then
    say "stopping MariaDB"
    # mysqld_safe exits by itself once mysqld shut down cleanly.
    mariadb-admin --socket="$MYSQL_SOCK" shutdown
  fi
  stop_pidfile munged /run/munge/munged.pid
}

# ---------------------------------------------------------------------------------------------- status
status() {
  local name pidfile
  for name in munged:/run/munge/munged.pid mariadb:/run/mysqld/mysqld.pid slurmdbd:/run/slurmdbd.pid \
              slurmctld:/run/slurmctld.pid slurmd:/run/slurmd.pid; do
    pidfile=${name#*:}
    if pid_alive "$pidfile"; then printf '%-10s running (pid %s)\n' "${name%%:*}" "$(cat "$pidfile")"
    else printf '%-10s stopped\n' "${name%%:*}"; fi
  done
  # Only ask the daemons that run: the clients retry a dead daemon for seconds.
  if pid_alive /run/slurmctld.pid; then echo "--- sinfo"; timeout 5 sinfo 2>&1 || true; fi
  if pid_alive /run/slurmdbd.pid; then
    echo "--- sacctmgr list cluster"; timeout 5 sacctmgr -n -P list cluster format=cluster 2>&1 || true
  fi
  all_up
}

# Everything running, configuration as we would write it, node usable, cluster registered.
all_up() {
  pid_alive /run/munge/munged.pid && pid_alive /run/mysqld/mysqld.pid && pid_alive /run/slurmdbd.pid \
    && pid_alive /run/slurmctld.pid && slurmd_ok || return 1
  [[ -f $ETC/slurm.conf && "$(cat "$ETC/slurm.conf")" == "$(render_slurm_conf)" ]] || return 1
  [[ -f $ETC/slurmdbd.conf ]] || return 1
  node_usable && cluster_registered
}

# ---------------------------------------------------------------------------------------------- start
start() {
  # Fast path: a second call with everything up costs a few process checks, one sinfo, one sacctmgr.
  if command -v slurmctld >/dev/null && all_up; then
    say "cluster $CLUSTER is up (node $NODE: $(node_state))"
    return 0
  fi
  install_packages
  mkdir -p "$ETC" "$LOGDIR" /var/spool/slurmctld /var/spool/slurmd

  local pass dbd_changed=0 conf_changed=0
  pass=$(db_password)
  write_if_changed "$ETC/slurmdbd.conf" "$(render_slurmdbd_conf "$pass")" 600 && dbd_changed=1
  write_if_changed "$ETC/slurm.conf" "$(render_slurm_conf)" 644 && conf_changed=1

  start_munge
  start_mariadb "$pass"
  start_slurmdbd "$dbd_changed"
  # Before slurmctld, so that it finds its cluster in the accounting database from its first start.
  register_cluster
  start_slurmctld "$conf_changed"
  start_slurmd "$conf_changed"
  say "cluster $CLUSTER is up (node $NODE: $(node_state), $(nproc) CPUs, $(real_memory_mb) MB; partition debug)"
}

preflight
# Two callers at once (e.g. two test sessions) would both start the daemons: one at a time. Every daemon
# is started with fd 9 closed (`9>&-`): a daemon inheriting it would hold the lock for its lifetime.
lock() { mkdir -p /run/lock; exec 9>/run/lock/lorabench-slurm.lock; flock -w 900 9 || die "another $0 holds the lock"; }
case ${1:-start} in
  start) lock; start ;;
  stop) lock; stop_all ;;
  status) status ;;
  *) die "usage: $0 [start|stop|status]" ;;
esac
