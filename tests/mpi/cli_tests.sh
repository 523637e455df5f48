#!/usr/bin/env bash
# The CLI under mpirun (registered by tests/mpi/CMakeLists.txt):
#   cli_tests.sh TEST ASSISTGEN DATA_DIR WORK_DIR MPIRUN
# Each TEST compares `mpirun -np 2 assistgen ...` with one process, or
# checks an error that must end every rank, within `timeout` (no hang).
set -euo pipefail
test=$1 cli=$2 data=$3 work=$4 mpirun=$5
run_np() { local np=$1; shift; timeout 90 "$mpirun" --oversubscribe --mca mpi_yield_when_idle 1 -np "$np" "$@"; }
rm -rf "$work" && mkdir -p "$work" && cd "$work"
m=$data/models
fail() { echo "FAIL: $*" >&2; exit 1; }
case "$test" in
  logits)
    "$cli" logits -m "$m/llama-gqa" --tokens 1,17,200,45,3 -t 1 -o one.npy > one.txt
    run_np 2 "$cli" logits -m "$m/llama-gqa" --tokens 1,17,200,45,3 -t 1 -o two.npy > two.txt 2> two.err
    cmp one.npy two.npy || fail "logits differ between 1 and 2 ranks"
    cmp one.txt two.txt || fail "stdout differs (only rank 0 may print)"
    for r in 0 1; do
      grep -q "tensor parallel: rank $r of 2, .* MB of weights on this rank" two.err || fail "no load line of rank $r"
    done
    # int4 weights and a GGUF file of stored 4-bit codes, over 4 ranks.
    "$cli" logits -m "$m/qwen2-real" --dtype int4 --tokens 5,6,7 -t 1 -o q1.npy > /dev/null
    run_np 4 "$cli" logits -m "$m/qwen2-real" --dtype int4 --tokens 5,6,7 -t 1 -o q4.npy > /dev/null 2>&1
    cmp q1.npy q4.npy || fail "int4 logits differ between 1 and 4 ranks"
    "$cli" logits -m "$data/gguf/llama-256-q4_k_m.gguf" --tokens 5,6,7 -t 1 -o g1.npy > /dev/null
    run_np 2 "$cli" logits -m "$data/gguf/llama-256-q4_k_m.gguf" --tokens 5,6,7 -t 1 -o g2.npy > /dev/null 2>&1
    cmp g1.npy g2.npy || fail "GGUF logits differ between 1 and 2 ranks" ;;
  generate)
    for dt in f32 bf16 int8; do
      args=(generate -m "$m/llama-gqa" -a "$m/llama-draft" --tokens 1,17,200,45 -n 24 -t 1 --dtype $dt --ignore-eos)
      "$cli" "${args[@]}" | head -1 > one.txt
      run_np 2 "$cli" "${args[@]}" > two.txt 2> two.err
      head -1 two.txt | cmp - one.txt || fail "greedy assisted tokens differ between 1 and 2 ranks ($dt)"
      "$cli" generate -m "$m/llama-gqa" --tokens 1,17,200,45 -n 24 -t 1 --dtype $dt --ignore-eos | head -1 |
        cmp - one.txt || fail "assisted greedy differs from plain greedy ($dt)"
    done ;;
  sampling)
    args=(generate -m "$m/llama-gqa" -a "$m/llama-gqa-noisy" --tokens 1,17,200,45 -n 24 -t 1 --do-sample --temp 0.9 --ignore-eos)
    "$cli" "${args[@]}" --seed 5 | head -1 > one.txt
    run_np 2 "$cli" "${args[@]}" --seed 5 | head -1 > two.txt
    cmp one.txt two.txt || fail "seeded sampling differs between 1 and 2 ranks"
    # A random seed is rank 0's on every rank (else the ranks would sample apart).
    run_np 2 "$cli" "${args[@]}" --seed -1 > rnd.txt
    seed=$(sed -n 's/^seed: \([0-9]*\) (random)$/\1/p' rnd.txt)
    [ -n "$seed" ] || fail "no random seed printed"
    "$cli" "${args[@]}" --seed "$seed" | head -1 | cmp - <(head -1 rnd.txt) || fail "random seed run not reproducible" ;;
  bench)
    run_np 2 "$cli" bench -m "$m/llama-gqa" --no-tinyllama --reps 1 --dtype f32 -t 1 --prefill 8 --batch 1,2 --new-tokens 8 \
      > bench.txt 2> bench.err || { cat bench.err >&2; fail "bench under mpirun failed"; }
    grep -q "tensor parallel: rank 1 of 2" bench.err || fail "no load line of rank 1"
    grep -q "tok/s\|tokens/s" bench.txt || fail "no figures printed" ;;
  batch)
    # Greedy, seeded sampling and a bad line: the same JSON lines from 1 and
    # 2 ranks, but for the timings in "stats".
    printf '%s\n' '{"tokens": [1, 17, 200, 45], "max_new_tokens": 12, "ignore_eos": true}' \
      '{"tokens": [1, 5, 6], "max_new_tokens": 20, "do_sample": true, "seed": 3, "temp": 0.9, "ignore_eos": true}' \
      'not json' '{"tokens": [1, 2], "max_new_tokens": 7, "ignore_eos": true}' > prompts.jsonl
    args=(batch -m "$m/llama-gqa" -a "$m/llama-draft" --prompts prompts.jsonl -t 1 --max-batch 2)
    set +e
    "$cli" "${args[@]}" --out one.jsonl 2> one.err; rc1=$?
    run_np 2 "$cli" "${args[@]}" --out two.jsonl > two.txt 2> two.err; rc2=$?
    set -e
    [ $rc1 -eq 1 ] && [ $rc2 -ne 0 ] && [ $rc2 -ne 124 ] || fail "exit statuses $rc1 and $rc2 (one bad line: 1)"
    grep -q "tensor parallel: rank 1 of 2" two.err || fail "no load line of rank 1"
    [ "$(grep -c 'prompts.jsonl:3: not valid JSON' two.err)" = 1 ] || fail "the bad line is not reported once"
    [ ! -s two.txt ] || fail "output on stdout with --out"
    strip() { sed 's/"stats":{[^}]*},//' "$1"; }
    [ "$(wc -l < two.jsonl)" = 4 ] || fail "not 4 output lines"
    diff <(strip one.jsonl) <(strip two.jsonl) || fail "batch output differs between 1 and 2 ranks" ;;
  serve)
    # `assistgen serve` on 2 ranks answers as one process: rank 0 listens,
    # rank 1 replays its rounds, through concurrent requests and a client
    # that leaves mid-stream; SIGTERM to rank 0 stops every rank cleanly.
    k=$data/../../models
    args=(serve -m "$k/kjv-target" -a "$k/kjv-draft" --port 0 -t 1 --max-batch 2)
    bodies=('{"prompt": "And God said", "max_tokens": 20, "temperature": 0}'
            '{"prompt": "In the beginning", "max_tokens": 24, "temperature": 0.8, "seed": 7}'
            '{"prompt": "Jesus wept", "max_tokens": 16, "temperature": 0, "stop": ["."]}'
            '{"prompt": "Thou shalt not", "max_tokens": 12, "temperature": 0.9, "seed": 1}')
    port_of() { sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$1"; }
    await_port() {  # the server's stdout file
      for _ in $(seq 300); do [ -n "$(port_of "$1")" ] && return; sleep 0.1; done
      fail "no server listening: $(cat "$1")"
    }
    request() {  # fd body: a completion request (HTTP/1.1 over bash's /dev/tcp, no client needed)
      printf 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
        "${#2}" "$2" >&"$1"
    }
    post() {  # port body: the response body
      exec 3<> "/dev/tcp/127.0.0.1/$1"
      request 3 "$2"
      sed '1,/^\r$/d' <&3
      exec 3<&-
    }
    ids() { grep -o '"completion_token_ids":\[[^]]*\]' "$1" || echo "no ids in $1: $(cat "$1")"; }
    # One process: the reference answers, one request at a time.
    "$cli" "${args[@]}" > one.out 2> one.err & pid=$!
    await_port one.out
    for i in 0 1 2 3; do post "$(port_of one.out)" "${bodies[$i]}" > one.$i; done
    kill -TERM $pid; wait $pid || fail "one-process server exit status $?"
    # Two ranks: the requests at once, a client leaving a long stream.
    timeout 120 "$mpirun" --oversubscribe --mca mpi_yield_when_idle 1 -np 2 "$cli" "${args[@]}" > two.out 2> two.err & mpid=$!
    await_port two.out
    port=$(port_of two.out)
    for i in 0 1 2; do post "$port" "${bodies[$i]}" > two.$i & done
    exec 4<> "/dev/tcp/127.0.0.1/$port"
    leave='{"prompt": "And", "max_tokens": 400, "stream": true, "ignore_eos": true}'
    request 4 "$leave"
    head -c 600 <&4 > /dev/null
    exec 4<&-
    wait $(jobs -p | grep -v "^$mpid\$") 2> /dev/null || true
    post "$port" "${bodies[3]}" > two.3  # after the cancellation: still in step
    for i in 0 1 2 3; do
      [ "$(ids one.$i)" = "$(ids two.$i)" ] || fail "request $i: $(ids two.$i) on 2 ranks, $(ids one.$i) on one"
    done
    r0=""
    for p in $(pgrep -f -- "$cli serve"); do tr '\0' '\n' < /proc/$p/environ | grep -qx "OMPI_COMM_WORLD_RANK=0" && r0=$p; done
    [ -n "$r0" ] || fail "no rank 0 process under mpirun"
    kill -TERM "$r0"
    set +e
    wait $mpid; rc=$?
    set -e
    cat two.err
    [ $rc -eq 0 ] || fail "mpirun exit status $rc after rank 0's graceful stop"
    grep -q "tensor parallel: rank 1 of 2" two.err || fail "no load line of rank 1"
    grep -q "assistgen serve: stopped: 5 requests (0 rejected, 0 client errors, 0 failed, 1 cancelled)" two.err ||
      fail "rank 0's summary is not 5 requests with 1 cancelled" ;;
  failing_rank)
    # Rank 1 reads a damaged checkpoint: its message, every rank ended, no hang.
    mkdir bad && cp "$m/llama-gqa/config.json" bad/ && head -c 3000 "$m/llama-gqa/model.safetensors" > bad/model.safetensors
    set +e
    timeout 60 "$mpirun" --oversubscribe --mca mpi_yield_when_idle 1 \
      -np 1 "$cli" logits -m "$m/llama-gqa" --tokens 1,2 -t 1 : -np 1 "$cli" logits -m bad --tokens 1,2 -t 1 \
      > out.txt 2> err.txt
    rc=$?
    set -e
    cat err.txt
    [ $rc -ne 0 ] || fail "mpirun succeeded with a damaged shard on rank 1"
    [ $rc -ne 124 ] || fail "the ranks hung instead of aborting"
    grep -q "rank 1 of 2: assistgen logits: error: .*bad.*model.safetensors" err.txt || fail "rank 1's message is missing" ;;
  other_model)
    set +e
    timeout 60 "$mpirun" --oversubscribe --mca mpi_yield_when_idle 1 \
      -np 1 "$cli" logits -m "$m/llama-gqa" --tokens 1,2 -t 1 : -np 1 "$cli" logits -m "$m/llama-gqa-noisy" --tokens 1,2 -t 1 \
      > out.txt 2> err.txt
    rc=$?
    set -e
    cat err.txt
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "exit status $rc"
    grep -q "rank 1 loaded another model than rank 0" err.txt || fail "no message naming rank 1" ;;
  no_split)
    set +e
    run_np 2 "$cli" tokenize -m "$m/llama-gqa" --text hi > out.txt 2> err.txt
    rc=$?
    set -e
    cat err.txt
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "tokenize under mpirun: exit status $rc"
    grep -q "only generate, logits, bench, batch and serve split a model" err.txt || fail "no message for tokenize" ;;
  *) fail "unknown test $test" ;;
esac
echo "ok: $test"
