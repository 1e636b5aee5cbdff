// Tuning variables that pick one of a few named values (CHAI_GEMV_DEFAULT=shape|width,
// CHAI_IPC_ALLREDUCE_NORM_STAGED=1|0, ...), read by the kernels' and collectives' host code.
#ifndef CHAI_KERNELS_ENV_CHOICE_H_
#define CHAI_KERNELS_ENV_CHOICE_H_

#include <initializer_list>

namespace chai {

// The index in `choices` of the variable `name`'s value. Unset or empty: 0, the first choice (the
// default). Any other value: a one-line warning on stderr naming the choices, then 0. Callers that
// read it once keep the answer in a static.
int EnvChoice(const char* name, std::initializer_list<const char*> choices);

}  // namespace chai

#endif  // CHAI_KERNELS_ENV_CHOICE_H_
