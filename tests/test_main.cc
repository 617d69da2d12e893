#include <gtest/gtest.h>
#include <openssl/crypto.h>

#include <csignal>

int main(int argc, char** argv) {
  // Tests write to sockets whose peers may already be gone; the relay handles EPIPE itself.
  std::signal(SIGPIPE, SIG_IGN);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
