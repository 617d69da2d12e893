#include "agent/cli.h"

int main(int argc, char** argv) { return kscribe::cli::run(argc, argv); }
