#include "agent/body_capture.h"

namespace kscribe {

// Placeholder until the streaming redactor lands: counts bytes, stores nothing.
class BodyCapture::Impl {
 public:
  explicit Impl(BodyOptions options) : options_(std::move(options)) {}
  void feed(std::span<const char> chunk) { wire_size_ += chunk.size(); }
  Result finish() {
    Result r;
    r.wire_size = wire_size_;
    r.content_type = options_.content_type;
    if (wire_size_ > 0) r.omitted_reason = "[BODY NOT RECORDED: redactor not available]";
    return r;
  }

 private:
  BodyOptions options_;
  std::uint64_t wire_size_ = 0;
};

BodyCapture::BodyCapture(BodyOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
BodyCapture::~BodyCapture() = default;
BodyCapture::BodyCapture(BodyCapture&&) noexcept = default;
BodyCapture& BodyCapture::operator=(BodyCapture&&) noexcept = default;
void BodyCapture::feed(std::span<const char> chunk) { impl_->feed(chunk); }
BodyCapture::Result BodyCapture::finish() { return impl_->finish(); }

}  // namespace kscribe
