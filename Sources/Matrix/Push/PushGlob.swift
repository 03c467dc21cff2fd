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

    /// Simulates the glob as an automaton over `text` (linear in text × pattern): a match may
    /// begin at any position `startsAt` accepts and must end at one `endsAt` accepts.
    private func run(_ text: [Unicode.Scalar], startsAt: (Int) -> Bool, endsAt: (Int) -> Bool) -> Bool {
        let m = scalars.count
        // `states[j]`: the first j pattern scalars match a text run ending here.
        var states = [Bool](repeating: false, count: m + 1)
        func close(_ states: inout [Bool]) {
            // A `*` may match nothing.
            for j in 0..<m where states[j] && scalars[j] == "*" { states[j + 1] = true }
        }
        for position in 0...text.count {
            if startsAt(position) { states[0] = true }
            close(&states)
            if states[m] && endsAt(position) { return true }
            guard position < text.count else { break }
            let c = text[position]
            var next = [Bool](repeating: false, count: m + 1)
            for j in 0..<m where states[j] {
                switch scalars[j] {
                case "*": next[j] = true
                case "?": next[j + 1] = true
                case let p where p == c: next[j + 1] = true
                default: break
                }
            }
            states = next
        }
        return false
    }
}
