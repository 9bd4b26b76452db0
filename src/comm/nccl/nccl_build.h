// Whether this build has NCCL: CUDA is on and nccl.h is on the include path (CMake links libnccl when it finds
// it next to the toolkit).
#pragma once

#if defined(PARADIT_WITH_CUDA) && __has_include(<nccl.h>)
#define PARADIT_HAS_NCCL 1
#else
#define PARADIT_HAS_NCCL 0
#endif
