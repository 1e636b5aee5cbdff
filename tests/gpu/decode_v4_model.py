# Lane-level numpy model of decode kernel 4 (kernels/cuda/paged_attention_decode_v4.cuh, fp16):
# the copy plan of each stage (block runs, table window), the mma.sync m16n8k16 fragments as the
# PTX ISA lays them out, the K/V shared-memory load orders and byte permutes, the online softmax,
# the warp merge and the split merge, each mirroring the kernel line by line, checked against a
# float64 reference (NaN-poisoned rows past the length, as paged_attention_gpu_test poisons them).
# Written to check the kernel's index math without a GPU; it does not replace the GPU test.
#   python3 tests/gpu/decode_v4_model.py [seed]
import numpy as np, sys

rng = np.random.default_rng(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
STAGES, STAGE_BYTES, WARPS = 3, 32 << 10, 4
lane = np.arange(32); gi = lane // 4; cc = lane % 4


def u32_to_h2(x):  # (..., n) uint32 -> (..., 2n) float32 of the fp16 halves, low first
    return np.ascontiguousarray(x, dtype=np.uint32).view(np.float16).astype(np.float32)


def pack2(lo, hi):
    l = np.asarray(lo, np.float32).astype(np.float16).view(np.uint16).astype(np.uint32)
    h = np.asarray(hi, np.float32).astype(np.float16).view(np.uint16).astype(np.uint32)
    return l | (h << 16)


def byte_perm(x, y, sel):
    b = np.concatenate([np.asarray(x, np.uint32)[..., None].view(np.uint8), np.asarray(y, np.uint32)[..., None].view(np.uint8)], -1)
    out = np.zeros(np.shape(x), np.uint32)
    for i in range(4):
        out |= b[..., (sel >> (4 * i)) & 0xF].astype(np.uint32) << (8 * i)
    return out


def mma(c, a, b):  # c (32,4) f32, a (32,4) u32, b (32,2) u32
    A = np.zeros((16, 16), np.float32); B = np.zeros((16, 8), np.float32); C = np.zeros((16, 8), np.float32)
    ah = u32_to_h2(a).reshape(32, 4, 2); bh = u32_to_h2(b).reshape(32, 2, 2)
    for L in range(32):
        g, t = L // 4, L % 4
        for e in range(2):
            A[g, 2 * t + e] = ah[L, 0, e]; A[g + 8, 2 * t + e] = ah[L, 1, e]
            A[g, 2 * t + 8 + e] = ah[L, 2, e]; A[g + 8, 2 * t + 8 + e] = ah[L, 3, e]
            B[2 * t + e, g] = bh[L, 0, e]; B[2 * t + 8 + e, g] = bh[L, 1, e]
        C[g, 2 * t] = c[L, 0]; C[g, 2 * t + 1] = c[L, 1]; C[g + 8, 2 * t] = c[L, 2]; C[g + 8, 2 * t + 1] = c[L, 3]
    with np.errstate(invalid='ignore', over='ignore'):
        D = A.astype(np.float64) @ B.astype(np.float64) + C
    out = np.zeros((32, 4), np.float32)
    for L in range(32):
        g, t = L // 4, L % 4
        out[L] = [D[g, 2 * t], D[g, 2 * t + 1], D[g + 8, 2 * t], D[g + 8, 2 * t + 1]]
    return out


def shfl_xor(v, m): return v[lane ^ m]
def shfl(v, src): return v[src]
def rescale(mo, mn):
    with np.errstate(invalid='ignore'):
        return np.where(mo == -np.inf, 0.0, np.exp2(mo - mn)).astype(np.float32)


def cta(D, G, bs, pool, ktab, vtab, q, c0, cl, scale):
    ROWS = STAGE_BYTES // (4 * D); WROWS = ROWS // WARPS; SUB = WROWS // 16; RB = D * 2; SIDE = ROWS * RB
    PAIRS = D // 32; MT = D // 16; LD = D // 8; LCH = LD // 8
    smem = np.full(STAGES * STAGE_BYTES, 0xFF, np.uint8)  # NaN-poisoned
    poolb = pool.view(np.uint8).reshape(-1)
    shift = int(np.log2(bs)) if (bs & (bs - 1)) == 0 else -1
    block_of = lambda pos: pos >> shift if shift >= 0 else pos // bs
    # q: lane (gi, c) pair pi: head gi dims 32pi + 8c .. +8
    qv = np.zeros((PAIRS, 32, 4), np.uint32)
    for pi in range(PAIRS):
        for L in range(32):
            if gi[L] < G:
                qv[pi, L] = q[gi[L], 32 * pi + 8 * cc[L]: 32 * pi + 8 * cc[L] + 8].view(np.uint32)
    st = {'win': 0}
    nblocks = len(ktab)
    def load_window(base):
        st['win'] = base
        b = base + lane
        st['k'] = np.array([ktab[x] if x < nblocks else -1 for x in b]); st['v'] = np.array([vtab[x] if x < nblocks else -1 for x in b])
    load_window(block_of(c0))
    copies = {}
    ntiles = (cl + ROWS - 1) // ROWS
    def issue(t):
        slot = t % STAGES
        pos0 = c0 + t * ROWS; pos1 = c0 + min(cl, (t + 1) * ROWS)
        b0, b1 = block_of(pos0), block_of(pos1 - 1)
        if b1 >= st['win'] + 32: load_window(b0)
        total = 0
        for L in range(32):
            b = b0 + L
            frm = (b - st['win']) & 31
            kb, vb = st['k'][frm], st['v'][frm]
            if b > b1: continue
            lo, hi = max(pos0, b * bs), min(pos1, (b + 1) * bs)
            nbytes = (hi - lo) * RB
            assert nbytes % 16 == 0 and nbytes > 0
            kdst = slot * STAGE_BYTES + (lo - pos0) * RB
            inb = lo - b * bs
            assert kb >= 0 and vb >= 0
            copies.setdefault(slot, []).append((kdst, (kb * bs + inb) * RB, nbytes))
            copies[slot].append((kdst + SIDE, (vb * bs + inb) * RB, nbytes))
            total += 2 * nbytes
        copies.setdefault(slot, []).append(('total', total))
        if t + 1 < ntiles:
            p0 = c0 + (t + 1) * ROWS; p1 = c0 + min(cl, (t + 2) * ROWS)
            nb0, nb1 = block_of(p0), block_of(p1 - 1)
            if nb1 >= st['win'] + 32: load_window(nb0)
    def complete(slot):  # the mbarrier wait: performs the slot's copies
        tot = 0
        for cp in copies.pop(slot):
            if cp[0] == 'total': tot2 = cp[1]; continue
            dst, src, n = cp
            smem[dst:dst + n] = poolb[src:src + n]; tot += n
        assert tot == tot2
    for t in range(min(STAGES, ntiles)): issue(t)
    m_run = np.full((WARPS, 32), -np.inf, np.float32); l_run = np.zeros((WARPS, 32), np.float32)
    acc = np.zeros((WARPS, MT, 32, 4), np.float32)
    def lds16(addr):  # per-lane byte address -> (32, 4) uint32
        return np.stack([smem[a:a + 16].view(np.uint32) for a in addr])
    for t in range(ntiles):
        slot = t % STAGES
        complete(slot)
        stage = slot * STAGE_BYTES
        for warp in range(WARPS):
            for sub in range(SUB):
                r0 = warp * WROWS + sub * 16
                valid = cl - t * ROWS - r0
                if valid <= 0: continue
                ks = stage + r0 * RB; vs = ks + SIDE
                sc = []
                for u in range(2):
                    s_ = np.zeros((32, 4), np.float32)
                    krow = ks + (8 * u + gi) * RB + 16 * cc
                    odd = gi & 1
                    y = [lds16(krow + 64 * (pi ^ odd)) for pi in range(PAIRS)]
                    for pi in range(PAIRS):
                        x = np.where(odd[:, None] == 1, y[pi ^ 1], y[pi])
                        a0 = np.stack([qv[pi][:, 0], 0 * lane, qv[pi][:, 1], 0 * lane], 1).astype(np.uint32)
                        s_ = mma(s_, a0, x[:, 0:2])
                        a1 = np.stack([qv[pi][:, 2], 0 * lane, qv[pi][:, 3], 0 * lane], 1).astype(np.uint32)
                        s_ = mma(s_, a1, x[:, 2:4])
                    sc.append(s_)
                xs = np.zeros((2, 2, 32), np.float32)
                for u in range(2):
                    for e in range(2):
                        with np.errstate(invalid='ignore'):
                            xs[u, e] = np.where(8 * u + 2 * cc + e < valid, sc[u][:, e] * scale, -np.inf)
                tmax = xs.max(axis=(0, 1))
                tmax = np.maximum(tmax, shfl_xor(tmax, 1)); tmax = np.maximum(tmax, shfl_xor(tmax, 2))
                m_new = np.maximum(m_run[warp], tmax)
                alpha = rescale(m_run[warp], m_new)
                with np.errstate(invalid='ignore'):
                    pr = np.where(xs == -np.inf, 0.0, np.exp2(xs - m_new)).astype(np.float32)
                l_run[warp] = l_run[warp] * alpha + pr.sum(axis=(0, 1))
                m_run[warp] = m_new
                pb = np.stack([pack2(pr[0, 0], pr[0, 1]), pack2(pr[1, 0], pr[1, 1])], 1)
                al0 = shfl(alpha, 8 * cc); al1 = shfl(alpha, 8 * cc + 4)
                acc[warp, :, :, 0] *= al0; acc[warp, :, :, 1] *= al1; acc[warp, :, :, 2] *= al0; acc[warp, :, :, 3] *= al1
                w = np.zeros((4, 32, LD // 2), np.uint32)
                for k in range(4):
                    r = 2 * cc + (k & 1) + 8 * (k >> 1)
                    vrow = vs + r * RB + gi * (16 * LCH)
                    if LCH == 1:
                        w[k] = lds16(vrow)
                    else:
                        flip = cc & 1
                        ya = lds16(vrow + 16 * flip); yb = lds16(vrow + 16 * (flip ^ 1))
                        v0 = np.where(flip[:, None] == 1, yb, ya); v1 = np.where(flip[:, None] == 1, ya, yb)
                        w[k] = np.concatenate([v0, v1], 1)
                if valid < 16:
                    for k in range(4):
                        ok = 2 * cc + (k & 1) + 8 * (k >> 1) < valid
                        w[k] = np.where(ok[:, None], w[k], 0)
                for tau in range(MT):
                    lo, hi = tau // 2, (MT + tau) // 2
                    sel = 0x7632 if tau & 1 else 0x5410
                    a = np.stack([byte_perm(w[0][:, lo], w[1][:, lo], sel), byte_perm(w[0][:, hi], w[1][:, hi], sel),
                                  byte_perm(w[2][:, lo], w[3][:, lo], sel), byte_perm(w[2][:, hi], w[3][:, hi], sel)], 1)
                    acc[warp, tau] = mma(acc[warp, tau], a, pb)
        if t + STAGES < ntiles: issue(t + STAGES)
    # merge warps
    s_ml = np.zeros((WARPS, 8, 2), np.float32)
    s_o = np.zeros((WARPS, 8, D), np.float32)
    for warp in range(WARPS):
        l = l_run[warp]; l = l + shfl_xor(l, 1); l = l + shfl_xor(l, 2)
        for L in range(32):
            if cc[L] == 0: s_ml[warp, gi[L]] = [m_run[warp, L], l[L]]
            for tau in range(MT):
                d0 = gi[L] * LD + tau; d1 = d0 + MT
                s_o[warp, 2 * cc[L], d0] = acc[warp, tau, L, 0]; s_o[warp, 2 * cc[L] + 1, d0] = acc[warp, tau, L, 1]
                s_o[warp, 2 * cc[L], d1] = acc[warp, tau, L, 2]; s_o[warp, 2 * cc[L] + 1, d1] = acc[warp, tau, L, 3]
    outx = np.zeros((G, D)); outml = np.zeros((G, 2))
    for i in range(G):
        mx = s_ml[:, i, 0].max()
        a = rescale(s_ml[:, i, 0], mx)
        outml[i] = [mx, (a * s_ml[:, i, 1]).sum()]
        outx[i] = (a[:, None] * s_o[:, i, :]).sum(0)
    return outml, outx


def seq_chunk(length, splits):
    c = (length + splits - 1) // splits
    return max(64, (c + 63) // 64 * 64)


def run(D, G, bs, length, p_chunk, max_splits):
    nb = (length + bs - 1) // bs
    num_blocks = 2 * nb + 5
    pool = rng.standard_normal((num_blocks, bs, D)).astype(np.float16)
    ids = rng.permutation(num_blocks)
    ktab, vtab = list(ids[:nb]) + [-1, -1], list(ids[nb:2 * nb]) + [-1, -1]
    # poison rows past the length in the last blocks
    last = length - (nb - 1) * bs
    pool[ktab[nb - 1], last:] = np.nan; pool[vtab[nb - 1], last:] = np.nan
    q = (1.5 * rng.standard_normal((G, D))).astype(np.float16)
    scale = 1.4426950408889634 / np.sqrt(D)
    chunk = min(p_chunk, seq_chunk(length, max_splits))
    nsplit = min((length + chunk - 1) // chunk, max_splits)
    parts = []
    for split in range(max_splits):
        c0 = split * chunk
        if c0 >= length: break
        cl = min(length - c0, chunk)
        parts.append(cta(D, G, bs, pool, ktab, vtab, q, c0, cl, scale))
    assert len(parts) == nsplit
    ml = np.array([p_[0] for p_ in parts]); acc = np.array([p_[1] for p_ in parts])
    mx = ml[:, :, 0].max(0)
    w = np.exp2(ml[:, :, 0] - mx)
    out = (w[:, :, None] * acc).sum(0) / (w * ml[:, :, 1]).sum(0)[:, None]
    out = out.astype(np.float16).astype(np.float64)
    # reference
    K = np.concatenate([pool[ktab[b]] for b in range(nb)])[:length].astype(np.float64)
    V = np.concatenate([pool[vtab[b]] for b in range(nb)])[:length].astype(np.float64)
    s = q.astype(np.float64) @ K.T / np.sqrt(D)
    pm = np.exp(s - s.max(1, keepdims=True)); pm /= pm.sum(1, keepdims=True)
    ref = pm @ V
    err = np.sqrt(((out - ref) ** 2).sum(1) / (ref ** 2).sum(1)).max()
    print(f"d{D} G{G} bs{bs} len{length} chunk{chunk} splits{nsplit}: max rel err {err:.2e}")
    assert err < 1e-2, err


for (D, G, bs, length, p_chunk, ms) in [(128, 1, 16, 100, 64, 2), (64, 3, 8, 300, 128, 3), (128, 8, 256, 700, 320, 3),
                                        (64, 8, 24, 130, 4096, 1), (128, 4, 16, 1, 64, 1), (128, 5, 40, 1000, 192, 6),
                                        (64, 1, 16, 17, 64, 1), (128, 2, 8, 600, 600, 1), (64, 2, 8, 1500, 1536, 1),
                                        (128, 6, 8, 2100, 2112, 1), (64, 7, 40, 2000, 1024, 2), (128, 1, 1024, 3000, 3008, 1)]:
    run(D, G, bs, length, p_chunk, ms)
