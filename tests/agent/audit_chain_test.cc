#include "agent/audit_chain.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "agent/durable_file.h"

namespace kscribe {
namespace {

// The sealed line is the canonical form of the line with its hash set, and the hash is that of
// the canonical form with an empty hash: however the line's values look.
TEST(AuditChainTest, SealedLineIsCanonicalAndCarriesItsHash) {
  const std::vector<std::string> paths = {
      "/api/v1/pods",
      R"(/api/v1/namespaces/x/configmaps/"hash":"")",  // the seal's marker, inside a value
      "caf\xc3\xa9 \x01 \xff",                         // non-ASCII, control, invalid UTF-8
  };
  std::string prev(kAuditGenesis);
  std::stringstream chain;
  for (const auto& path : paths) {
    nlohmann::json line = {{"agent", "bot"},
                           {"path", path},
                           {"status", 200},
                           {"process", {{"hash", ""}, {"comm", "kubectl"}}}};
    const std::string text = sealAuditLine(line, prev);
    EXPECT_EQ(text, canonicalJson(line)) << path;
    nlohmann::json unsealed = line;
    unsealed["hash"] = "";
    EXPECT_EQ(line["hash"], durable::sha256Hex(canonicalJson(unsealed))) << path;
    prev = line["hash"].get<std::string>();
    chain << text << "\n";
  }
  const auto result = verifyAuditChain(chain, {});
  EXPECT_TRUE(result.ok) << result.problem;
}

}  // namespace
}  // namespace kscribe
