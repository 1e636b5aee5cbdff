# Numpy model of decode kernel 4's cluster pass, fourth form (34bc8ea, reverted by 6753173;
# kernels/cuda/paged_attention_v4_cluster.cuh there, off main until a GPU has run it): the host
# plan (MakePlanV4Cluster), the device item finder (V4ClusterItems), the member ranking, the
# item's block ids in shared memory (s_ids), each stage's block copies into the ring (issue()),
# the scores (each warp's rows summed by the transposed tree, V4WarpSumRows: which lane writes
# which row), each warp's online softmax and P·V per 16-position tile (V4TileSoftmaxPv, column 0),
# the warps' merge (MergeWarpStates), the partials and the last CTA's merge, each mirroring the
# kernel's index math, checked against a
# float64 reference over random batches: block sizes 8-32, head_dim 64 and 128, clusters of 1-20
# members (several chunks of 8), unclustered sequences, prefill and idle rows, shuffled pools.
# Written to check the index math without a GPU; it does not replace the GPU test.
#   python3 tests/gpu/decode_v4_cluster_model.py [seed] [cases] [stage KB: 16 (default) or 32,
#   the CHAI_V4_CLUSTER_STAGE_KB build knob]
import sys

import numpy as np

ALIGN, CTA_COST, MAX_CHUNK, MEMBERS, MAX_ITEMS, STAGES, THREADS = 64, 64, 1024, 8, 16, 6, 128
MAX_IDS = MAX_CHUNK // 8 + 1  # kV4ClusterMaxIds
STAGE_KB = 16  # CHAI_V4_CLUSTER_STAGE_KB (main() may change it)


def ceil_div(a, b):
    return (a + b - 1) // b


def best_splits_v3(max_len, busy, resident):  # paged_attention_decode_v3.cuh
    busy, resident, max_len = max(busy, 1), max(resident, 1), max(max_len, 1)
    max_s = min(ceil_div(max_len, ALIGN), max(1, ceil_div(16 * resident, busy)))
    best, best_cost = 1, -1
    for s in range(1, max_s + 1):
        chunk = ceil_div(ceil_div(max_len, s), ALIGN) * ALIGN
        splits = ceil_div(max_len, chunk)
        cost = ceil_div(busy * splits, resident) * (chunk + CTA_COST)
        if best_cost < 0 or cost < best_cost:
            best, best_cost = splits, cost
    return best


def seq_chunk(length, splits):  # paged_attention_common.cuh
    c = ceil_div(length, splits)
    return max(ALIGN, ceil_div(c, ALIGN) * ALIGN)


def plan(max_seq_len, hint, num_seqs, heads, resident):  # MakePlanV4Cluster
    max_len = max(max_seq_len, 1)
    m = min(max(hint, 1), heads)
    items = max(1, num_seqs * ceil_div(heads, m) * ceil_div(m, MEMBERS))
    max_items = num_seqs * heads
    ctas = max(items, ceil_div(max_items, MAX_ITEMS))
    splits = max(best_splits_v3(max_len, items, resident), ceil_div(max_len, MAX_CHUNK))
    return ctas, splits, max_items


def find_items(score_head, q_start, heads, ctas, me):  # V4ClusterItems, per CTA `me`
    num_seqs = len(q_start) - 1
    n = num_seqs * heads
    # The map in shared memory: each (sequence, head)'s representative, -1 where the sequence does not decode.
    smap = [score_head[i // heads][i % heads] if q_start[i // heads + 1] - q_start[i // heads] == 1 else -1
            for i in range(n)]
    counts = np.zeros(n, np.int64)
    for i in range(n):
        if 0 <= smap[i] < heads:
            counts[(i // heads) * heads + smap[i]] += 1
    out, nxt = [], 0
    for i in range(n):
        c = ceil_div(counts[i], MEMBERS) if smap[i] == i % heads else 0
        for k in range(c):
            if nxt % ctas == me and nxt // ctas < MAX_ITEMS:
                out.append((nxt, i, k))
            nxt += 1
    assert nxt <= ctas * MAX_ITEMS, "the plan leaves items without a CTA"
    return out


def warp_sum_rows(v):  # V4WarpSumRows on v[lane][row] (R rows): each lane's (row, sum)
    v = np.array(v, np.float32)
    R = v.shape[1]
    row, half, off = [0] * 32, R // 2, 16
    while half >= 1:
        nv = v.copy()
        for lane in range(32):
            upper, partner = bool(lane & off), lane ^ off
            for j in range(half):
                keep = v[lane, j + half] if upper else v[lane, j]
                send = v[partner, j] if not upper else v[partner, j + half]  # the partner's opposite half
                nv[lane, j] = keep + send
            row[lane] += half if upper else 0
        v, half, off = nv, half // 2, off // 2
    x = v[:, 0].copy()
    while off > 0:
        x = x + x[[lane ^ off for lane in range(32)]]
        off //= 2
    return row, x


def run_item(P, item, s, r, z, split, counters, out):
    d, H, bs = P["d"], P["heads"], P["bs"]
    rows = min((STAGE_KB << 10) // (2 * d), 128)  # V4ClusterStage
    stages = STAGES * (16 << 10) // (rows * d * 2)  # a 96 KB ring
    score_rows = min(rows // 4, 16)  # kScoreRows
    lane_dims = d // 32
    warp_rows = rows // 4
    length = min(P["lens"][s], P["splits"] * MAX_CHUNK)
    chunk = seq_chunk(length, P["splits"])
    c0 = split * chunk
    if c0 >= length:
        return
    cl, nsplit = min(length - c0, chunk), min(ceil_div(length, chunk), P["splits"])
    assert cl <= MAX_CHUNK
    members = [m for m in range(H) if P["score_head"][s][m] == r]
    mem = members[MEMBERS * z:MEMBERS * (z + 1)]
    nm = len(mem)
    if nm <= 0:
        return
    row = P["q_start"][s]
    q = P["q"][row, r].astype(np.float32) * np.float32(P["scale_log2"])
    nk = ceil_div(cl, rows)
    ntot = nk * (1 + nm)
    ring = np.full((stages, rows, d), np.nan, np.float32)  # stale rows stay NaN: reading one shows
    # s_ids: row 0 the representative's K table, row 1 + j member j's V table, blocks from b_first.
    b_first, nb = c0 // bs, (c0 + cl - 1) // bs - c0 // bs + 1
    assert nb <= MAX_IDS, "an item's block ids overflow s_ids"
    s_ids = np.full((MEMBERS + 1, MAX_IDS), -7, np.int64)
    for i in range((nm + 1) * nb):
        hh, k = divmod(i, nb)
        head = r if hh == 0 else mem[hh - 1]
        s_ids[hh, k] = P["tables"][s][0 if hh == 0 else 1][head][b_first + k]

    def geometry(t):
        tile = t if t < nk else (t - nk) % nk
        return (0 if t < nk else 1 + (t - nk) // nk), c0 + tile * rows, c0 + min(cl, (tile + 1) * rows)

    def issue(t):
        slot = (P["uses"] + t) % stages
        hh, pos0, pos1 = geometry(t)
        ring[slot] = np.nan
        b0, b1 = pos0 // bs, (pos1 - 1) // bs
        assert b1 - b0 + 1 <= 32, "a stage spans more blocks than lanes"
        for lane in range(32):
            b = b0 + lane
            if b > b1:
                continue
            blk = s_ids[hh, b - b_first]
            assert blk != -7, "a block id s_ids never loaded"
            lo, hi = max(pos0, b * bs), min(pos1, (b + 1) * bs)
            src = P["pool"][blk, lo - b * bs:hi - b * bs] if blk >= 0 else np.zeros((hi - lo, d), np.float32)
            ring[slot, lo - pos0:hi - pos0] = src

    for t in range(min(stages, ntot)):
        issue(t)
    s_p = np.full(MAX_CHUNK, np.nan, np.float32)
    m_run = l_run = acc = None
    for t in range(ntot):
        slot = (P["uses"] + t) % stages
        stage = ring[slot].copy()
        tile = t if t < nk else (t - nk) % nk
        valid = min(rows, cl - tile * rows)
        if t < nk:
            for w in range(4):  # groups of rows: lane's dims lane * lane_dims .., then the tree over the warp
                for g0 in range(w * warp_rows, (w + 1) * warp_rows, score_rows):
                    part = [[np.dot(q[l * lane_dims:(l + 1) * lane_dims],
                                    stage[g0 + i, l * lane_dims:(l + 1) * lane_dims]) for i in range(score_rows)]
                            for l in range(32)]
                    lane_row, sums = warp_sum_rows(part)
                    for lane in range(0, 32, 32 // score_rows):  # the lanes that write
                        rr = g0 + lane_row[lane]
                        if rr < valid:
                            s_p[tile * rows + rr] = sums[lane]
        else:
            if tile == 0:
                m_run, l_run, acc = np.full(4, -np.inf), np.zeros(4), np.zeros((4, d))
            for w in range(4):
                for sub in range(warp_rows // 16):
                    r0 = w * warp_rows + sub * 16
                    tv = valid - r0
                    if tv <= 0:
                        continue
                    x = np.array([s_p[tile * rows + r0 + j] if j < tv else -np.inf for j in range(16)])
                    m_new = max(m_run[w], x.max())
                    alpha = 0.0 if m_run[w] == -np.inf else np.exp2(m_run[w] - m_new)
                    p = np.where(x == -np.inf, 0.0, np.exp2(x - m_new))
                    vt = np.where(np.arange(16)[:, None] < tv, stage[r0:r0 + 16], 0.0)  # stale rows zeroed
                    l_run[w] = l_run[w] * alpha + p.sum()
                    acc[w] = acc[w] * alpha + p @ vt
                    m_run[w] = m_new
        if t + stages < ntot:
            issue(t + stages)
        if t >= nk and (t - nk) % nk == nk - 1:
            m = mem[(t - nk) // nk]
            mx = m_run.max()  # MergeWarpStates
            a = np.where(m_run == -np.inf, 0.0, np.exp2(m_run - mx))
            lsum, x = (a * l_run).sum(), (a[:, None] * acc).sum(0)
            if nsplit == 1:
                out[row, m] = x / lsum
            else:
                P["part"][(s, m, split)] = (mx, lsum, x)
    P["uses"] += ntot
    if nsplit == 1:
        return
    counters[item] += 1
    if counters[item] != nsplit:
        return
    counters[item] = 0
    for m in mem:  # MergeGroupSplits
        parts = [P["part"][(s, m, k)] for k in range(nsplit)]
        mx = max(p[0] for p in parts)
        lsum = sum(np.exp2(p[0] - mx) * p[1] for p in parts)
        out[row, m] = sum(np.exp2(p[0] - mx) * p[2] for p in parts) / lsum


def random_case(rng):
    d = int(rng.choice([64, 128]))
    H = int(rng.choice([4, 8, 12, 32]))
    bs = int(rng.choice([8, 16, 32]))
    B = int(rng.integers(1, 5))
    new = [int(rng.choice([1, 1, 1, 3, 0])) for _ in range(B)]  # 3: a prefill row, 0: idle
    if all(n != 1 for n in new):
        new[0] = 1
    lens = [int(rng.choice([1, 7, 63, 64, 65, 300, 2047, 2049, 5000])) for _ in range(B)]
    score_head = []
    for s in range(B):
        if rng.random() < 0.2:
            score_head.append(list(range(H)))  # not clustered: every head its own representative
            continue
        reps = sorted(rng.choice(H, size=int(rng.integers(1, max(2, H // 2))), replace=False).tolist())
        sh = [reps[int(rng.integers(len(reps)))] for _ in range(H)]
        for r in reps:
            sh[r] = r
        score_head.append(sh)
    blocks_per_list = [ceil_div(n, bs) for n in lens]
    total = sum(2 * H * b for b in blocks_per_list)
    ids = rng.permutation(total)
    pool = (rng.standard_normal((total, bs, d)).astype(np.float16)).astype(np.float32)
    tables, nxt = [], 0
    for s in range(B):
        t = [[None] * H, [None] * H]
        for side in range(2):
            for h in range(H):
                t[side][h] = ids[nxt:nxt + blocks_per_list[s]]
                nxt += blocks_per_list[s]
        tables.append(t)
    q_start = np.concatenate([[0], np.cumsum(new)]).astype(int)
    q = (rng.standard_normal((int(q_start[-1]), H, d)).astype(np.float16)).astype(np.float32)
    return dict(d=d, heads=H, bs=bs, lens=lens, score_head=score_head, pool=pool, tables=tables,
                q_start=q_start, q=q, scale_log2=1.4426950408889634 / np.sqrt(d), part={}, uses=0)


def reference(P):
    out = {}
    for s in range(len(P["lens"])):
        if P["q_start"][s + 1] - P["q_start"][s] != 1:
            continue
        row = P["q_start"][s]
        n = P["lens"][s]
        for h in range(P["heads"]):
            r = P["score_head"][s][h]
            def rows(side, head):
                tab = P["tables"][s][side][head]
                return np.concatenate([P["pool"][b] for b in tab]).astype(np.float64)[:n]
            sc = rows(0, r) @ P["q"][row, r].astype(np.float64) / np.sqrt(P["d"])
            p = np.exp(sc - sc.max())
            out[(row, h)] = (p / p.sum()) @ rows(1, h)
    return out


def main():
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    cases = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    global STAGE_KB
    STAGE_KB = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    rng = np.random.default_rng(seed)
    worst = 0.0
    for case in range(cases):
        P = random_case(rng)
        B, H = len(P["lens"]), P["heads"]
        hint = max(1, H // max(1, len(set(P["score_head"][0]))))
        ctas, splits, max_items = plan(max(P["lens"]), hint, B, H, resident=2 * 132)
        P["splits"] = splits
        out = np.full((int(P["q_start"][-1]), H, P["d"]), np.nan)
        counters = np.zeros(max_items, np.int64)
        for split in range(splits):
            for me in range(ctas):
                P["uses"] = 0
                for item, i, z in find_items(P["score_head"], P["q_start"], H, ctas, me):
                    run_item(P, item, i // H, i % H, z, split, counters, out)
        assert not counters.any(), "a counter left non-zero"
        for (row, h), want in reference(P).items():
            err = np.max(np.abs(out[row, h] - want)) / max(1e-6, np.max(np.abs(want)))
            assert np.isfinite(err) and err < 2e-3, f"case {case}: row {row} head {h} err {err}"
            worst = max(worst, err)
    print(f"{cases} cases, {STAGE_KB} KB stages: max rel err {worst:.2e}")


if __name__ == "__main__":
    main()
