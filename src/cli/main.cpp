// paradit command line front end.
#include <cstdio>

int main(int argc, char** argv) {
  std::fprintf(stderr, "usage: paradit <generate|bench|inspect> ...\n");
  return 2;
}
