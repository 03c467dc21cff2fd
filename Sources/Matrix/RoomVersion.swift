/// A room version and its properties (specification "Room Versions"), one table for versions
/// 1–12. Everything that differs between versions — event ID format, redaction, auth rule
/// variants, state resolution — is read from here, never from `id` comparisons elsewhere.
public struct RoomVersion: Sendable, Hashable, CustomStringConvertible {
    /// How event IDs are formed: `$opaque:domain` (v1–2), base64 reference hash (v3), URL-safe (v4+).
    public enum EventIDFormat: Sendable { case opaqueWithDomain, referenceHashBase64, referenceHashURLSafe }
    /// State resolution algorithm: v1, v2 (versions 2–11), v2.1 (version 12, MSC4297).
    public enum StateResolution: Sendable { case v1, v2, v2_1 }
    /// Which redaction rules apply, named after the version that introduced them.
    public enum RedactionRules: Sendable { case v1, v6, v8, v9, v11 }
    /// Advertised in the `m.room_versions` capability.
    public enum Stability: Sendable { case stable, unstable }

    /// The identifier clients and servers use, e.g. "11".
    public internal(set) var id: String
    public internal(set) var eventIDFormat: EventIDFormat
    public internal(set) var stateResolution: StateResolution
    public internal(set) var redaction: RedactionRules
    /// v5+: signing keys must be valid at `origin_server_ts` (MSC2076).
    public internal(set) var enforceKeyValidity: Bool
    /// v1–5: auth rule for `m.room.aliases` (removed by v6, MSC2432).
    public internal(set) var specialCaseAliasesAuth: Bool
    /// v6+: events must be strict canonical JSON (integers in range, no floats).
    public internal(set) var strictCanonicalJSON: Bool
    /// v6+: `notifications` in power levels is checked like `events` (MSC2209).
    public internal(set) var limitNotificationsPowerLevels: Bool
    /// v1–2: `m.room.redaction` has its own auth rule (sender's redact level or same domain).
    public internal(set) var redactionAuthRule: Bool
    /// v7+: `knock` membership and join rule (MSC2403).
    public internal(set) var knockJoinRule: Bool
    /// v8+: `restricted` join rule and `join_authorised_via_users_server` (MSC3083).
    public internal(set) var restrictedJoinRule: Bool
    /// v10+: `knock_restricted` join rule (MSC3787).
    public internal(set) var knockRestrictedJoinRule: Bool
    /// v10+: power level values must be JSON integers, not strings (MSC3667).
    public internal(set) var integerPowerLevels: Bool
    /// v1–10: `m.room.create` content must have `creator`; v11+ uses `sender` (MSC2175).
    public internal(set) var createHasCreator: Bool
    /// v11+: `redacts` lives in `content` of `m.room.redaction` (MSC2174).
    public internal(set) var redactsInContent: Bool
    /// v12+: room creators (create `sender` + `additional_creators`) have infinite power (MSC4289).
    public internal(set) var privilegedCreators: Bool
    /// v12+: room ID is the create event's reference hash; the create event has no `room_id` and
    /// is not listed in `auth_events` (MSC4291).
    public internal(set) var hashBasedRoomIDs: Bool
    public internal(set) var stability: Stability

    public var description: String { id }

    /// Room versions 1–12, keyed by identifier.
    public static let all: [RoomVersion] = {
        var versions: [RoomVersion] = []
        let base = RoomVersion(
            id: "1", eventIDFormat: .opaqueWithDomain, stateResolution: .v1, redaction: .v1,
            enforceKeyValidity: false, specialCaseAliasesAuth: true, strictCanonicalJSON: false,
            limitNotificationsPowerLevels: false, redactionAuthRule: true, knockJoinRule: false,
            restrictedJoinRule: false, knockRestrictedJoinRule: false, integerPowerLevels: false,
            createHasCreator: true, redactsInContent: false, privilegedCreators: false,
            hashBasedRoomIDs: false, stability: .stable)
        versions.append(base)
        var v = base
        v = v.with(id: "2") { $0.stateResolution = .v2 }; versions.append(v)
        v = v.with(id: "3") { $0.eventIDFormat = .referenceHashBase64; $0.redactionAuthRule = false }; versions.append(v)
        v = v.with(id: "4") { $0.eventIDFormat = .referenceHashURLSafe }; versions.append(v)
        v = v.with(id: "5") { $0.enforceKeyValidity = true }; versions.append(v)
        v = v.with(id: "6") {
            $0.specialCaseAliasesAuth = false; $0.strictCanonicalJSON = true
            $0.limitNotificationsPowerLevels = true; $0.redaction = .v6
        }; versions.append(v)
        v = v.with(id: "7") { $0.knockJoinRule = true }; versions.append(v)
        v = v.with(id: "8") { $0.restrictedJoinRule = true; $0.redaction = .v8 }; versions.append(v)
        v = v.with(id: "9") { $0.redaction = .v9 }; versions.append(v)
        v = v.with(id: "10") { $0.knockRestrictedJoinRule = true; $0.integerPowerLevels = true }; versions.append(v)
        v = v.with(id: "11") { $0.createHasCreator = false; $0.redactsInContent = true; $0.redaction = .v11 }; versions.append(v)
        v = v.with(id: "12") { $0.privilegedCreators = true; $0.hashBasedRoomIDs = true; $0.stateResolution = .v2_1 }; versions.append(v)
        return versions
    }()

    static let byID: [String: RoomVersion] = Dictionary(uniqueKeysWithValues: all.map { ($0.id, $0) })


    /// Like `init?(id:)` but throws `M_UNSUPPORTED_ROOM_VERSION`.
    public static func named(_ id: String) throws(MatrixError) -> RoomVersion {
        guard let v = RoomVersion(id: id) else {
            throw MatrixError(.unsupportedRoomVersion, "Unsupported room version \(id)")
        }
        return v
    }

    /// The default for new rooms when configuration says nothing: what the current specification
    /// recommends ("Servers SHOULD use room version 12 as the default", Room Versions).
    public static let recommendedDefault: RoomVersion = RoomVersion(id: "12")!

    public static let v1 = RoomVersion(id: "1")!
    public static let v2 = RoomVersion(id: "2")!
    public static let v3 = RoomVersion(id: "3")!
    public static let v4 = RoomVersion(id: "4")!
    public static let v5 = RoomVersion(id: "5")!
    public static let v6 = RoomVersion(id: "6")!
    public static let v7 = RoomVersion(id: "7")!
    public static let v8 = RoomVersion(id: "8")!
    public static let v9 = RoomVersion(id: "9")!
    public static let v10 = RoomVersion(id: "10")!
    public static let v11 = RoomVersion(id: "11")!
    public static let v12 = RoomVersion(id: "12")!

    /// Join rules this version accepts.
    public var supportedJoinRules: Set<String> {
        var rules: Set<String> = ["public", "invite", "private"]
        if knockJoinRule { rules.insert("knock") }
        if restrictedJoinRule { rules.insert("restricted") }
        if knockRestrictedJoinRule { rules.insert("knock_restricted") }
        return rules
    }

    /// The `room_versions` capability object for `/capabilities`.
    public static func capabilities(default version: RoomVersion = recommendedDefault) -> JSON {
        var available: [String: JSON] = [:]
        for v in all { available[v.id] = .string(v.stability == .stable ? "stable" : "unstable") }
        return ["default": .string(version.id), "available": .object(available)]
    }

    private func with(id: String, _ change: (inout RoomVersion) -> Void) -> RoomVersion {
        var copy = self
        copy.id = id
        change(&copy)
        return copy
    }
}

extension RoomVersion {
    /// The version with identifier `id`, or nil if Myelin does not know it.
    public init?(id: String) {
        guard let v = RoomVersion.byID[id] else { return nil }
        self = v
    }
}
