#pragma once
// Risk tiers, as DESIGN.md's table defines them.

#include <cstdint>
#include <string_view>

#include "agent/api_request.h"

namespace kscribe {

enum class Tier : std::uint8_t {
  kObserve = 0,
  kOperate = 1,
  kModify = 2,
  kSensitive = 3,
  kBreakGlass = 4
};

/// Classifies a request. Pure, no allocation. `upgrade` is Connection: Upgrade (exec, attach,
/// port-forward). `content_type_or_patch_body_hint` may carry the request body of a PATCH (when
/// known) so a `kubectl rollout restart` patch is OPERATE; without it such a patch is MODIFY.
Tier classify(std::string_view method, const ApiRequest& request, bool upgrade,
              std::string_view content_type_or_patch_body_hint = {});

/// classify() once the request body has been seen: pass BodyCapture::Result::rollout_restart_patch
/// of the request body, so a `kubectl rollout restart` PATCH becomes OPERATE.
Tier classifyWithBody(std::string_view method, const ApiRequest& request, bool upgrade,
                      bool rollout_restart_patch);

/// "OBSERVE", "OPERATE", "MODIFY", "SENSITIVE", "BREAK-GLASS".
const char* tierName(Tier tier);

/// Largest body isRolloutRestartPatch looks at; a restart patch is ~100 bytes.
inline constexpr std::size_t kMaxRestartPatchSize = 4096;

/// True for a patch body that only sets
/// spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"] (kubectl rollout
/// restart), as JSON merge / strategic merge patch.
bool isRolloutRestartPatch(std::string_view body);

}  // namespace kscribe
