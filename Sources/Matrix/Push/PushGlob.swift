/// A glob pattern of push rules (appendix "Glob-style matching": `*` any run of characters,
/// `?` exactly one), matched case-insensitively, either against a whole value or, for
/// `content.body`, against any substring that starts and ends at a word boundary. A literal
/// glob (the user's display name) treats `*` and `?` as themselves.
public struct PushGlob: Sendable, Hashable {
    public let pattern: String
    /// Lowercased scalars of the pattern.
    let scalars: [Unicode.Scalar]
    let hasWildcards: Bool
    /// The lowercased pattern as text (a plain pattern is compared byte for byte).
    let lowercased: String

    public init(_ pattern: String, literal: Bool = false) {
        self.pattern = pattern
        lowercased = pattern.lowercased()
        scalars = Array(lowercased.unicodeScalars)
        hasWildcards = !literal && scalars.contains { $0 == "*" || $0 == "?" }
    }

    /// Whole-value match; `value` is already lowercased.
    public func matches(lowercased value: String) -> Bool {
        if !hasWildcards {
            // Same scalars ⇔ same UTF-8 bytes; the count check settles most mismatches at once.
            return value.utf8.count == lowercased.utf8.count && value.utf8.elementsEqual(lowercased.utf8)
        }
        let text = Array(value.unicodeScalars)
        return run(text, startsAt: { $0 == 0 }, endsAt: { $0 == text.count })
    }

    /// Match of a substring between word boundaries; `text` is lowercased scalars. A word
    /// character is `[a-z0-9_]` or any non-ASCII character (so non-Latin words are not split
    /// into letters); the spec leaves "case-insensitive" and letters beyond ASCII to the server.
    public func matchesWord(in text: [Unicode.Scalar]) -> Bool {
        func isWord(_ s: Unicode.Scalar) -> Bool {
            s.value >= 0x80 || (s >= "a" && s <= "z") || (s >= "A" && s <= "Z") || (s >= "0" && s <= "9") || s == "_"
        }
        let starts: (Int) -> Bool = { $0 == 0 || !isWord(text[$0 - 1]) }
        let ends: (Int) -> Bool = { $0 == text.count || !isWord(text[$0]) }
        if !hasWildcards {
            // The common case (names): a plain search.
            guard !scalars.isEmpty, scalars.count <= text.count else { return false }
            for start in 0...(text.count - scalars.count) where text[start] == scalars[0] && starts(start)
            && ends(start + scalars.count) && text[start..<start + scalars.count].elementsEqual(scalars) {
                return true
            }
            return false
        }
        return run(text, startsAt: starts, endsAt: ends)
    }

    /// Simulates the glob as an automaton over `text` (linear in text × pattern, whatever the
    /// pattern: a hostile glob cannot backtrack): a match may begin at any position `startsAt`
    /// accepts and must end at one `endsAt` accepts. States live in a 64-bit word for patterns
    /// of up to 62 scalars (no allocation; only the live states are visited), else in two arrays.
    private func run(_ text: [Unicode.Scalar], startsAt: (Int) -> Bool, endsAt: (Int) -> Bool) -> Bool {
        let m = scalars.count
        guard m < 63 else { return runLong(text, startsAt: startsAt, endsAt: endsAt) }
        return scalars.withUnsafeBufferPointer { pattern in
            var starMask: UInt64 = 0, anyMask: UInt64 = 0
            for j in 0..<m {
                if pattern[j] == "*" { starMask |= 1 << UInt64(j) }
                if pattern[j] == "?" { anyMask |= 1 << UInt64(j) }
            }
            let accept: UInt64 = 1 << UInt64(m)
            // With nothing live, a match can only begin where the first scalar is, when it is
            // a literal: the scan jumps there.
            let first: Unicode.Scalar? = m > 0 && pattern[0] != "*" && pattern[0] != "?" ? pattern[0] : nil
            var states: UInt64 = 0
            var position = 0
            while position <= text.count {
                defer { position += 1 }
                if states == 0, let first {
                    while position < text.count && text[position] != first { position += 1 }
                    if position == text.count { return false }
                }
                if startsAt(position) { states |= 1 }
                // A `*` may match nothing: its successor is live too (ascending, so runs of
                // stars close in one pass).
                var pending = states & starMask
                while pending != 0 {
                    let j = UInt64(pending.trailingZeroBitCount)
                    pending &= pending - 1
                    let successor: UInt64 = 1 << (j + 1)
                    if states & successor == 0 {
                        states |= successor
                        if starMask & successor != 0 { pending |= successor }
                    }
                }
                if states & accept != 0 && endsAt(position) { return true }
                guard position < text.count else { break }
                let c = text[position]
                var next = states & starMask
                var live = states & ~starMask & ~accept
                while live != 0 {
                    let j = live.trailingZeroBitCount
                    live &= live - 1
                    if anyMask & (1 << UInt64(j)) != 0 || pattern[j] == c { next |= 1 << UInt64(j + 1) }
                }
                states = next
            }
            return false
        }
    }

    /// `run` for long patterns: the same automaton over two reused arrays.
    private func runLong(_ text: [Unicode.Scalar], startsAt: (Int) -> Bool, endsAt: (Int) -> Bool) -> Bool {
        let m = scalars.count
        // `states[j]`: the first j pattern scalars match a text run ending here.
        var states = [Bool](repeating: false, count: m + 1)
        var next = [Bool](repeating: false, count: m + 1)
        for position in 0...text.count {
            if startsAt(position) { states[0] = true }
            // A `*` may match nothing.
            for j in 0..<m where states[j] && scalars[j] == "*" { states[j + 1] = true }
            if states[m] && endsAt(position) { return true }
            guard position < text.count else { break }
            let c = text[position]
            for j in 0...m { next[j] = false }
            for j in 0..<m where states[j] {
                switch scalars[j] {
                case "*": next[j] = true
                case "?": next[j + 1] = true
                case let p where p == c: next[j + 1] = true
                default: break
                }
            }
            swap(&states, &next)
        }
        return false
    }
}
