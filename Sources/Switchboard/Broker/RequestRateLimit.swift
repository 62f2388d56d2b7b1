import NIOCore

/// One connection's request rate: a token bucket of `burst` requests refilled at `rate` per
/// second. A request past it is refused (`rate_limited`) but still spends a token, so the
/// bucket goes into debt; a client that keeps sending through the refusals runs up a debt of
/// `burst` more and is told to go (`exceeded`: the session closes with 1008). A client that
/// slows down when refused pays its debt back at `rate` and is admitted again.
///
/// Lives on its session's event loop; no locking.
struct RequestRateLimit {
    enum Admission: Equatable {
        case admitted
        case refused
        case exceeded
    }

    let rate: Double
    let burst: Double
    /// Requests that may be admitted right now; negative while refused requests are owed.
    private var tokens: Double
    private var refilled: NIODeadline

    /// `rate` 0 admits everything.
    init(rate: Int, burst: Int, now: NIODeadline) {
        self.rate = Double(rate)
        self.burst = Double(burst)
        self.tokens = Double(burst)
        self.refilled = now
    }

    mutating func admit(at now: NIODeadline) -> Admission {
        guard rate > 0 else { return .admitted }
        let elapsed = Double((now - refilled).nanoseconds) / 1e9
        if elapsed > 0 {
            tokens = min(burst, tokens + elapsed * rate)
            refilled = now
        }
        tokens -= 1
        if tokens >= 0 { return .admitted }
        return tokens < -burst ? .exceeded : .refused
    }
}
