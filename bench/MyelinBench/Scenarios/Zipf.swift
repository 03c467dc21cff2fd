import Foundation

/// Draws ranks 0..<n with probability proportional to 1/(rank+1)^s (a Zipf-like law): with
/// s = 1.1 and n = 2,000, rank 0 gets 17% of the draws, the top 100 ranks 72%, and rank 0 is
/// drawn ≈ 2,000 times as often as the median rank: a few rooms are hot and most are cold
/// (`mixed --skew zipf:S`). The cumulative weights are computed once; a draw is one uniform
/// number and a binary search.
struct Zipf: Sendable {
    let exponent: Double
    private let cumulative: [Double]

    init(count: Int, exponent: Double) {
        self.exponent = exponent
        var acc = 0.0
        var c: [Double] = []
        c.reserveCapacity(max(count, 1))
        for k in 0..<max(count, 1) {
            acc += 1 / pow(Double(k + 1), exponent)
            c.append(acc)
        }
        cumulative = c
    }

    var count: Int { cumulative.count }

    /// The probability of rank `k`.
    func probability(_ k: Int) -> Double {
        guard k >= 0 && k < cumulative.count, let total = cumulative.last, total > 0 else { return 0 }
        return (cumulative[k] - (k > 0 ? cumulative[k - 1] : 0)) / total
    }

    func draw<G: RandomNumberGenerator>(using rng: inout G) -> Int {
        guard let total = cumulative.last, total > 0 else { return 0 }
        let u = Double.random(in: 0..<total, using: &rng)
        var low = 0, high = cumulative.count - 1
        while low < high {
            let mid = (low + high) / 2
            if cumulative[mid] > u { high = mid } else { low = mid + 1 }
        }
        return low
    }

    /// `none` → nil, `zipf:S` (S > 0, at most 10) → the law's exponent.
    static func parseSkew(_ text: String) -> Double?? {
        if text == "none" || text.isEmpty { return .some(nil) }
        guard text.hasPrefix("zipf:"), let s = Double(text.dropFirst(5)), s > 0, s <= 10 else { return nil }
        return .some(s)
    }
}
