// cuDNN's C++ graph front end (the nvidia-cudnn-frontend PyPI package), included behind our warning set.
#pragma once

// The front end is a large header-only library written for its own warning set; ours would flag it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-variable"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <cudnn_frontend.h>
#pragma GCC diagnostic pop
