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
    grep -q "only generate, logits and bench split a model" err.txt || fail "no message for tokenize" ;;
  *) fail "unknown test $test" ;;
esac
echo "ok: $test"
