#!/usr/bin/env bash
# Single-node SLURM cluster (munged + slurmctld + slurmd) on this Debian machine,
# for CI and for trying OPUS's SLURM manager.  Run as root.  Idempotent.
#
#   scripts/slurm-cluster.sh start     install slurm-wlm + munge if missing, write
#                                      /etc/slurm/slurm.conf, start the daemons that
#                                      are not running, wait until the node is idle
#   scripts/slurm-cluster.sh stop      stop slurmctld, slurmd and munged (SIGTERM,
#                                      then SIGKILL after 30 s); jobs' state is kept
#   scripts/slurm-cluster.sh restart   stop slurmctld + slurmd, then start: rewrites
#                                      slurm.conf from the current environment (e.g.
#                                      OPUS_SLURM_EPILOG); running jobs survive
#   scripts/slurm-cluster.sh status    print daemon pids, sinfo and squeue; exit 3
#                                      if a daemon is not running
#   scripts/slurm-cluster.sh stop-ctld stop slurmctld alone (a scheduler outage, for
#                                      fault tests): slurmd and running jobs go on
#   scripts/slurm-cluster.sh start-ctld start the daemons that are not running with the
#                                      slurm.conf as it is, and wait until the node is idle
#
# The daemons are started directly (no systemd), with pid files in /run/slurm and
# /run/munge.  The cluster is named "opus"; its one node is "localhost" (all CPUs,
# ~95 % of the RAM) in two partitions, "debug" (the default) and "other".  No
# accounting database: sacct does not work; finished jobs stay visible to
# `squeue -t all` and `scontrol show job` for MinJobAge seconds plus up to ~30 s,
# and each finished job gets a line in /var/log/slurm/jobcomp.log
# (jobcomp/filetxt).  Logs: /var/log/slurm/*.log, /var/log/munge/munged.log.
# Job state lives in /var/lib/slurm/slurmctld (job ids go on across restarts).
#
# Environment:
#   OPUS_SLURM_EPILOG        absolute path of an executable run by slurmctld as
#                            EpilogSlurmctld when each job ends (as the SlurmUser);
#                            unset or empty: no EpilogSlurmctld.  It (like any
#                            slurm.conf change) takes effect only through `restart`:
#                            `start` on a running cluster only warns.
#   OPUS_SLURM_USER          the SlurmUser: root (default) or slurm.  slurmctld,
#                            and so the EpilogSlurmctld and jobcomp, run as this
#                            user.  root lets the epilog read job directories that
#                            are closed to others (e.g. pytest's /tmp/pytest-of-root,
#                            mode 0700); slurm is what a real cluster uses.
#   OPUS_SLURM_MIN_JOB_AGE   MinJobAge in seconds (default 30).
#   OPUS_SLURM_WAIT          seconds to wait for the node to become idle (default 90).
#   OPUS_SLURM_FORCE=1       overwrite a slurm.conf that this script did not write.
set -euo pipefail

usage() { echo "usage: $0 start|stop|status|restart|stop-ctld|start-ctld" >&2; exit 2; }
die() { echo "slurm-cluster: ERROR: $*" >&2; exit 1; }
log() { echo "slurm-cluster: $*" >&2; }

[ $# -eq 1 ] || usage
CMD="$1"
case "$CMD" in start|stop|status|restart|stop-ctld|start-ctld) ;; -h|--help) sed -n '2,43p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; *) usage ;; esac
[ "$(id -u)" -eq 0 ] || die "must run as root"

CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
MARKER="# Written by OPUS scripts/slurm-cluster.sh"
RUN_DIR=/run/slurm
CTLD_PID="$RUN_DIR/slurmctld.pid"
SLURMD_PID="$RUN_DIR/slurmd.pid"
STATE_DIR=/var/lib/slurm/slurmctld
SPOOL_DIR=/var/lib/slurm/slurmd
LOG_DIR=/var/log/slurm
MUNGE_RUN=/run/munge
MUNGE_PID="$MUNGE_RUN/munged.pid"
MUNGE_KEY=/etc/munge/munge.key
NODE=localhost

SLURM_USER="${OPUS_SLURM_USER:-root}"
case "$SLURM_USER" in slurm|root) ;; *) die "OPUS_SLURM_USER must be slurm or root, not '$SLURM_USER'" ;; esac
MIN_JOB_AGE="${OPUS_SLURM_MIN_JOB_AGE:-30}"
case "$MIN_JOB_AGE" in ''|*[!0-9]*) die "OPUS_SLURM_MIN_JOB_AGE must be a number of seconds" ;; esac
WAIT="${OPUS_SLURM_WAIT:-90}"
case "$WAIT" in ''|*[!0-9]*) die "OPUS_SLURM_WAIT must be a number of seconds" ;; esac
EPILOG="${OPUS_SLURM_EPILOG:-}"

# ---------------------------------------------------------------- helpers

# pid_alive PIDFILE NAME: print the pid if PIDFILE names a live process called NAME
pid_alive() {
    local pid
    [ -s "$1" ] || return 1
    pid="$(tr -dc '0-9' < "$1")"
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 1
    echo "$pid"
}

# stop_daemon PIDFILE NAME: SIGTERM, wait up to 30 s, then SIGKILL
stop_daemon() {
    local pid
    if ! pid="$(pid_alive "$1" "$2")"; then
        rm -f "$1"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
        [ -d "/proc/$pid" ] || break
        sleep 0.1
    done
    if [ -d "/proc/$pid" ]; then
        log "$2 (pid $pid) did not stop after 30 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$1"
    log "stopped $2 (pid $pid)"
}

# run_quiet DESCRIPTION CMD...: run CMD with its output captured; show it on failure
run_quiet() {
    local what="$1" out rc=0; shift
    out="$(mktemp /tmp/slurm-cluster.XXXXXX)"
    # 9>&-: the daemons must not inherit (and so hold) the lock of this script
    "$@" >"$out" 2>&1 </dev/null 9>&- || rc=$?
    if [ "$rc" -ne 0 ]; then
        log "$what failed (exit $rc): $*"
        tail -n 30 "$out" >&2
    fi
    rm -f "$out"
    return "$rc"
}

# ---------------------------------------------------------------- install

install_packages() {
    local b missing=0
    for b in munged mungekey slurmctld slurmd sinfo squeue sbatch scontrol; do
        command -v "$b" >/dev/null 2>&1 || missing=1
    done
    [ "$missing" -eq 1 ] || return 0
    command -v apt-get >/dev/null 2>&1 || die "slurm/munge binaries are missing and there is no apt-get (install slurm-wlm and munge yourself)"
    log "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! run_quiet "apt-get install" apt-get install -y -q slurm-wlm munge; then
        log "retrying after apt-get update"
        run_quiet "apt-get update" apt-get update -q || die "apt-get update failed"
        run_quiet "apt-get install" apt-get install -y -q slurm-wlm munge || die "apt-get install slurm-wlm munge failed"
    fi
    # on a machine with systemd the packages may have started their own units;
    # this script manages the daemons itself
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        systemctl stop slurmctld slurmd >/dev/null 2>&1 || true
        systemctl disable slurmctld slurmd >/dev/null 2>&1 || true
    fi
}

# ---------------------------------------------------------------- munge

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    id munge >/dev/null 2>&1 || die "no 'munge' OS user (the munge package creates it)"
    install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
    install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
    install -d -o munge -g munge -m 0711 /var/lib/munge
    if [ ! -s "$MUNGE_KEY" ]; then
        log "creating $MUNGE_KEY"
        rm -f "$MUNGE_KEY"
        if ! mungekey --create --keyfile="$MUNGE_KEY" >/dev/null 2>&1; then
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
        fi
    fi
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"
    local pid
    if pid="$(pid_alive "$MUNGE_PID" munged)" && munge_ok; then
        log "munged already running (pid $pid)"
        return 0
    fi
    if munge_ok; then
        log "a munged without a pid file in $MUNGE_PID is answering; using it"
        return 0
    fi
    rm -f "$MUNGE_PID"
    run_quiet "munged" runuser -u munge -- munged || die "munged did not start (see /var/log/munge/munged.log)"
    for _ in $(seq 1 50); do
        munge_ok && break
        sleep 0.1
    done
    munge_ok || die "munged started but munge -n | unmunge fails (see /var/log/munge/munged.log)"
    log "started munged (pid $(cat "$MUNGE_PID" 2>/dev/null || echo '?'))"
}

# ---------------------------------------------------------------- slurm.conf

real_memory_mb() {
    local kb
    kb="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
    # a bit under the actual size, so that slurmd never finds "Low RealMemory"
    echo $(( kb * 95 / 100 / 1024 ))
}

# print the wanted slurm.conf on stdout
gen_conf() {
    local epilog_line="# no EpilogSlurmctld (OPUS_SLURM_EPILOG was not set)"
    if [ -n "$EPILOG" ]; then
        epilog_line="EpilogSlurmctld=$EPILOG"
    fi
    cat <<EOF
$MARKER (start/restart rewrites it).
# Single-node cluster for CI and trials of OPUS; not a production configuration.
ClusterName=opus
SlurmctldHost=localhost
SlurmUser=$SLURM_USER
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# slurmctld does not run its scheduler when an EpilogSlurmctld ends, so a job
# waiting for a CPU would wait for the next backfill pass (every 30 s by default)
SchedulerParameters=bf_interval=1
MailProg=/bin/true
# a node that went down because its slurmd restarted comes back by itself
ReturnToService=2
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# finished jobs stay visible to "squeue -t all" and scontrol for this many seconds
# (plus up to ~30 s until the next purge)
MinJobAge=$MIN_JOB_AGE
# no accounting database (no slurmdbd): sacct does not work
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# one line per finished job; JobComp* and EpilogSlurmctld need a slurmctld
# restart, "scontrol reconfigure" does not apply them
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG_DIR/jobcomp.log
$epilog_line
NodeName=$NODE NodeHostname=$(hostname) NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$(real_memory_mb) State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=other Nodes=$NODE MaxTime=INFINITE State=UP
EOF
}

check_epilog() {
    [ -n "$EPILOG" ] || return 0
    case "$EPILOG" in /*) ;; *) die "OPUS_SLURM_EPILOG must be an absolute path: $EPILOG" ;; esac
    if [ ! -f "$EPILOG" ] || [ ! -x "$EPILOG" ]; then
        die "OPUS_SLURM_EPILOG=$EPILOG is not an executable file"
    fi
    if [ "$SLURM_USER" != root ] && ! runuser -u "$SLURM_USER" -- test -x "$EPILOG"; then
        die "OPUS_SLURM_EPILOG=$EPILOG is not executable by user $SLURM_USER (a parent directory closed to it?)"
    fi
}

# preflight: refuse early (before stopping anything) what start would refuse later
preflight() {
    check_epilog
    if [ -f "$CONF" ] && ! head -n 1 "$CONF" | grep -qF "$MARKER" && [ "${OPUS_SLURM_FORCE:-0}" != 1 ]; then
        die "$CONF exists and was not written by this script; not touching it (OPUS_SLURM_FORCE=1 overwrites it, keeping a .bak copy)"
    fi
}

# write_conf: (re)write slurm.conf; prints "changed" on stdout if it changed
write_conf() {
    local new
    new="$(mktemp /tmp/slurm-cluster.conf.XXXXXX)"
    gen_conf > "$new"
    if [ -f "$CONF" ] && cmp -s "$new" "$CONF"; then
        rm -f "$new"
        return 0
    fi
    if [ -f "$CONF" ] && ! head -n 1 "$CONF" | grep -qF "$MARKER" && [ "${OPUS_SLURM_FORCE:-0}" != 1 ]; then
        rm -f "$new"
        die "$CONF exists and was not written by this script; not touching it (OPUS_SLURM_FORCE=1 overwrites it, keeping a .bak copy)"
    fi
    if [ -f "$CONF" ] && ! head -n 1 "$CONF" | grep -qF "$MARKER"; then
        cp -p "$CONF" "$CONF.bak"
        log "saved the old $CONF as $CONF.bak"
    fi
    install -d -m 0755 "$CONF_DIR"
    install -m 0644 "$new" "$CONF"
    rm -f "$new"
    echo changed
}

prepare_dirs() {
    id slurm >/dev/null 2>&1 || die "no 'slurm' OS user (the slurm-wlm packages create it)"
    install -d -o "$SLURM_USER" -g "$SLURM_USER" -m 0755 "$RUN_DIR" "$LOG_DIR" /var/lib/slurm
    install -d -o "$SLURM_USER" -g "$SLURM_USER" -m 0700 "$STATE_DIR"
    install -d -o root -g root -m 0755 "$SPOOL_DIR"
    touch "$LOG_DIR/jobcomp.log"
    # in case OPUS_SLURM_USER changed since the last start
    chown -R "$SLURM_USER:$SLURM_USER" "$STATE_DIR"
    chown "$SLURM_USER:$SLURM_USER" "$LOG_DIR/jobcomp.log" "$LOG_DIR"/slurmctld.log 2>/dev/null || true
    chmod 0644 "$LOG_DIR/jobcomp.log"
}

# ---------------------------------------------------------------- slurm daemons

node_state() { sinfo -h -n "$NODE" -o '%T' 2>/dev/null | head -n 1; }

start_slurm() {
    local pid
    if pid="$(pid_alive "$CTLD_PID" slurmctld)"; then
        log "slurmctld already running (pid $pid)"
    else
        rm -f "$CTLD_PID"
        # without saved state slurmctld numbers jobs from 1 again: old jobcomp lines
        # would then describe other jobs with the same ids
        if [ ! -e "$STATE_DIR/job_state" ] && [ -s "$LOG_DIR/jobcomp.log" ]; then
            mv -f "$LOG_DIR/jobcomp.log" "$LOG_DIR/jobcomp.log.old"
            install -m 0644 -o "$SLURM_USER" -g "$SLURM_USER" /dev/null "$LOG_DIR/jobcomp.log"
            log "no saved job state: moved the old jobcomp log to $LOG_DIR/jobcomp.log.old"
        fi
        run_quiet "slurmctld" slurmctld || die "slurmctld did not start (see $LOG_DIR/slurmctld.log)"
        log "started slurmctld"
    fi
    if pid="$(pid_alive "$SLURMD_PID" slurmd)"; then
        log "slurmd already running (pid $pid)"
    else
        rm -f "$SLURMD_PID"
        run_quiet "slurmd" slurmd -N "$NODE" || die "slurmd did not start (see $LOG_DIR/slurmd.log)"
        log "started slurmd"
    fi
}

wait_idle() {
    local t0 state="" resumed=0
    t0=$SECONDS
    while [ $((SECONDS - t0)) -lt "$WAIT" ]; do
        pid_alive "$CTLD_PID" slurmctld >/dev/null || { tail -n 20 "$LOG_DIR/slurmctld.log" >&2 2>/dev/null; die "slurmctld died (see $LOG_DIR/slurmctld.log)"; }
        pid_alive "$SLURMD_PID" slurmd >/dev/null || { tail -n 20 "$LOG_DIR/slurmd.log" >&2 2>/dev/null; die "slurmd died (see $LOG_DIR/slurmd.log)"; }
        state="$(node_state)"
        case "$state" in
            idle|mixed|allocated|completing)
                log "node $NODE is $state (ready after $((SECONDS - t0)) s)"
                return 0 ;;
            down*|drain*|fail*)
                # a drain (e.g. saved from an earlier run) stays until resumed;
                # "down" while slurmd is still registering is normal, so resume
                # that only if it sticks
                if [ "$resumed" -eq 0 ] && { [ "${state#drain}" != "$state" ] || [ $((SECONDS - t0)) -ge 3 ]; }; then
                    log "node $NODE is $state; resuming it"
                    scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
                    resumed=1
                fi ;;
        esac
        sleep 0.5
    done
    sinfo >&2 2>/dev/null || true
    scontrol show node "$NODE" >&2 2>/dev/null || true
    die "node $NODE not idle after $WAIT s (state: ${state:-unknown}); see $LOG_DIR/"
}

cmd_start() {
    preflight
    install_packages
    start_munge
    prepare_dirs
    local running=0 changed
    pid_alive "$CTLD_PID" slurmctld >/dev/null && running=1
    if [ "$running" -eq 1 ] && [ -f "$CONF" ] && ! gen_conf | cmp -s - "$CONF"; then
        log "WARNING: slurmctld is running with a different slurm.conf than this environment asks for (OPUS_SLURM_EPILOG?); leaving it as it is: run '$0 restart' to apply"
    else
        changed="$(write_conf)"
        if [ -n "$changed" ]; then
            log "wrote $CONF"
            # a slurmd left running from before would keep the old configuration
            stop_daemon "$SLURMD_PID" slurmd
        fi
    fi
    start_slurm
    wait_idle
}

stop_slurm() {
    # slurmd first so that it does not complain about the controller going away
    stop_daemon "$SLURMD_PID" slurmd
    stop_daemon "$CTLD_PID" slurmctld
}

cmd_stop() {
    stop_slurm
    stop_daemon "$MUNGE_PID" munged
}

cmd_status() {
    local pid rc=0 d
    for d in "munged:$MUNGE_PID" "slurmctld:$CTLD_PID" "slurmd:$SLURMD_PID"; do
        if pid="$(pid_alive "${d#*:}" "${d%%:*}")"; then
            echo "${d%%:*}: running (pid $pid)"
        else
            echo "${d%%:*}: not running"
            rc=3
        fi
    done
    if [ -f "$CONF" ]; then
        echo "EpilogSlurmctld: $(sed -n 's/^EpilogSlurmctld=//p' "$CONF" | head -n 1)"
    fi
    if command -v sinfo >/dev/null 2>&1 && [ "$rc" -eq 0 ]; then
        echo "---- sinfo"
        sinfo || rc=3
        echo "---- squeue"
        squeue || rc=3
    fi
    return "$rc"
}

# one start/stop/restart at a time (tests and CI may call this script concurrently)
if [ "$CMD" != status ]; then
    exec 9>/run/opus-slurm-cluster.lock
    flock -w 180 9 || die "another $0 has held /run/opus-slurm-cluster.lock for 180 s"
fi

case "$CMD" in
    start)   cmd_start ;;
    stop)    cmd_stop ;;
    stop-ctld) stop_daemon "$CTLD_PID" slurmctld ;;
    start-ctld) start_slurm; wait_idle ;;
    restart) preflight; stop_slurm; cmd_start ;;   # munged keeps running
    status)  cmd_status ;;
esac
