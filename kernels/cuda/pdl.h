// Programmatic Dependent Launch (PDL, Hopper and later): the host-side switch.
//
// With PDL a kernel is launched with cudaLaunchAttributeProgrammaticStreamSerialization, so the
// GPU may make it resident while the kernel before it in the stream is still draining (its
// launch latency and the predecessor's tail overlap). Every kernel launched that way executes
// griddepcontrol.wait (PdlWait in pdl.cuh) before it touches global memory that earlier work
// wrote or still reads, which returns only once the predecessor grid has completed and its
// writes are visible; so results do not change, only the gaps between kernels shrink. Inside
// stream capture the launch becomes a programmatic edge of the graph.
//
// Off by default. CHAI_PDL=1 turns it on, and only on devices of compute capability >= 9.0.
// (Decode kernel 4's CHAI P·V pass is launched with the attribute either way, behind its scores
// pass, which releases it early: see pdl.cuh; CHAI_DECODE_V4_PV_EARLY=0 turns that off.)
// The setting is read once per process, at the first launch (the environment variable and the
// capability of the device current then; chai uses one device per process), and cached;
// ReloadPdlSetting() reads both again (tests that compare runs with and without PDL).
#ifndef CHAI_KERNELS_CUDA_PDL_H_
#define CHAI_KERNELS_CUDA_PDL_H_

namespace chai::cuda {

// True when kernels that support it are launched with the programmatic-serialization attribute.
bool PdlEnabled();

// Forgets the cached setting: the next PdlEnabled() reads CHAI_PDL and the device again.
// Graphs captured before keep the launches they recorded.
void ReloadPdlSetting();

}  // namespace chai::cuda

#endif  // CHAI_KERNELS_CUDA_PDL_H_
