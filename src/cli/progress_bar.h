// A one-line denoising progress bar with step times on stderr, drawn only when stderr is a terminal.
#pragma once

#include "paradit/pipeline/flux_pipeline.h"

namespace paradit::cli {

class ProgressBar {
 public:
  // Draws nothing when `enabled` is false or stderr is not a terminal (logs and pipes stay clean).
  explicit ProgressBar(bool enabled);
  ~ProgressBar() { finish(); }
  void update(const FluxProgress& p);
  // Ends the line (idempotent).
  void finish();

 private:
  bool enabled_;
  bool drawn_ = false;
  int image_ = -1;
  double image_seconds_ = 0;  // steps of the current image so far
};

}  // namespace paradit::cli
