#!/usr/bin/env bash
# A one-node Slurm cluster in a folder, on loopback, for the sweep's Slurm tests:
#   slurm_cluster.sh start DIR   starts munged, slurmctld and slurmd with everything under DIR and
#                                prints the SLURM_CONF path once the node is idle
#   slurm_cluster.sh stop DIR    stops them
# It needs root (slurmd starts jobs as their user) and Debian's slurmctld, slurmd, slurm-client and
# munge packages; without them it exits 77 with the reason, which callers treat as "skip".
set -euo pipefail
action=${1:?start or stop}
dir=$(realpath -m "${2:?a directory}")

stop() {
  if [[ -f $dir/slurm.conf ]]; then
    SLURM_CONF=$dir/slurm.conf scontrol shutdown >/dev/null 2>&1 || true
  fi
  for pid_file in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    [[ -f $pid_file ]] || continue
    pid=$(cat "$pid_file")
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
}

if [[ $action == stop ]]; then
  stop
  exit 0
fi

for program in munged slurmctld slurmd sbatch squeue scontrol; do
  command -v "$program" >/dev/null || { echo "slurm_cluster: $program is not installed (scripts/setup.sh installs it)"; exit 77; }
done
[[ $(id -u) -eq 0 ]] || { echo "slurm_cluster: needs root to run slurmd"; exit 77; }

rm -rf "$dir"
mkdir -p "$dir"/{munge,state,spool,log}
chmod 700 "$dir"/{munge,state,spool,log}
head -c 1024 /dev/urandom > "$dir/munge/munge.key"
chmod 400 "$dir/munge/munge.key"
munged --force --socket="$dir/munge/munge.sock" --key-file="$dir/munge/munge.key" \
  --log-file="$dir/log/munged.log" --pid-file="$dir/munge/munged.pid" --seed-file="$dir/munge/seed"

free_port() {
  local port
  while :; do
    port=$(shuf -i 20000-60000 -n 1)
    ss -Htan "sport = :$port" | grep -q . || { echo "$port"; return; }
  done
}
host=$(hostname -s)
cpus=$(nproc)
cat > "$dir/slurm.conf" <<CONF
ClusterName=bouquet-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
MinJobAge=600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=sweeps Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$dir/slurm.conf
trap 'stop; echo "slurm_cluster: did not start; logs in $dir/log" >&2' ERR
slurmctld -i
slurmd
for _ in $(seq 150); do
  state=$(sinfo --noheader --format=%T 2>/dev/null || true)
  if [[ $state == idle ]]; then
    trap - ERR
    echo "$SLURM_CONF"
    exit 0
  fi
  sleep 0.2
done
echo "slurm_cluster: the node did not become idle (state '$state'); logs in $dir/log" >&2
stop
exit 1
