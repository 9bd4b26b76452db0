#include "cli/progress_bar.h"

#include <unistd.h>

#include <cstdio>
#include <string>

namespace paradit::cli {

ProgressBar::ProgressBar(bool enabled) : enabled_(enabled && isatty(fileno(stderr))) {}

void ProgressBar::update(const FluxProgress& p) {
  if (!enabled_ || p.steps <= 0) return;
  if (p.image != image_) {
    image_ = p.image;
    image_seconds_ = 0;
  }
  image_seconds_ += p.step_seconds;
  const double per_step = image_seconds_ / p.step;
  const int remaining = (p.steps - p.step) + (p.images - 1 - p.image) * p.steps;
  constexpr int kWidth = 30;
  const int filled = p.step * kWidth / p.steps;
  const std::string bar = std::string(filled, '#') + std::string(kWidth - filled, '.');
  // \r and the clear-to-end-of-line escape redraw the line in place.
  std::fprintf(stderr, "\rimage %d/%d [%s] %d/%d  %.2f s/step  ETA %.0f s\x1b[K", p.image + 1, p.images,
               bar.c_str(), p.step, p.steps, per_step, remaining * per_step);
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::finish() {
  if (!drawn_) return;
  std::fputc('\n', stderr);
  drawn_ = false;
}

}  // namespace paradit::cli
