import Matrix

/// A row of `users`: one local account. Built by registration, read by login and the
/// profile and admin APIs. Ids are plain strings here (the typed Matrix identifiers convert
/// at the store's edge).
public struct UserRecord: Sendable, Hashable {
    public var userID: String
    public var passwordHash: String?
    public var createdTs: Int64
    public var isGuest: Bool
    public var isAdmin: Bool
    public var deactivated: Bool
    public var displayname: String?
    public var avatarURL: String?
    /// Set by an administrator (migration 115); changed only through `AccountStore`'s
    /// setters, never by `updateUser`.
    public var locked: Bool
    public var suspended: Bool
    /// Deactivated with `erase` (Synapse's GDPR erasure).
    public var erased: Bool

    /// A row with the admin-set flags, as the store reads it.
    public init(userID: String, passwordHash: String?, createdTs: Int64, isGuest: Bool, isAdmin: Bool,
                deactivated: Bool, displayname: String?, avatarURL: String?, locked: Bool, suspended: Bool, erased: Bool) {
        self.init(userID: userID, passwordHash: passwordHash, createdTs: createdTs, isGuest: isGuest, isAdmin: isAdmin,
                  deactivated: deactivated, displayname: displayname, avatarURL: avatarURL)
        self.locked = locked
        self.suspended = suspended
        self.erased = erased
    }

    // The flags are set by the initializer above, not by new defaulted parameters here: code
    // compiled against this signature keeps linking (an incremental build may not recompile it).
    public init(userID: String, passwordHash: String? = nil, createdTs: Int64 = currentTimeMillis(),
                isGuest: Bool = false, isAdmin: Bool = false, deactivated: Bool = false,
                displayname: String? = nil, avatarURL: String? = nil) {
        self.locked = false
        self.suspended = false
        self.erased = false
        self.userID = userID
        self.passwordHash = passwordHash
        self.createdTs = createdTs
        self.isGuest = isGuest
        self.isAdmin = isAdmin
        self.deactivated = deactivated
        self.displayname = displayname
        self.avatarURL = avatarURL
    }
}

/// A row of `devices`: one logged-in device of a user. Written at login and by the device
/// APIs; the SessionActor updates last-seen.
public struct DeviceRecord: Sendable, Hashable {
    public var userID: String
    public var deviceID: String
    public var displayName: String?
    public var lastSeenTs: Int64?
    public var lastSeenIP: String?
    public var lastSeenUserAgent: String?
    public var createdTs: Int64

    public init(userID: String, deviceID: String, displayName: String? = nil, lastSeenTs: Int64? = nil,
                lastSeenIP: String? = nil, lastSeenUserAgent: String? = nil,
                createdTs: Int64 = currentTimeMillis()) {
        self.userID = userID
        self.deviceID = deviceID
        self.displayName = displayName
        self.lastSeenTs = lastSeenTs
        self.lastSeenIP = lastSeenIP
        self.lastSeenUserAgent = lastSeenUserAgent
        self.createdTs = createdTs
    }

    /// The device id, typed (stored ids were validated when the device was created).
    public var id: DeviceID { DeviceID(unchecked: deviceID) }
}

/// A row of `access_tokens`: the hash of an access token (never the token itself), whose
/// device it authenticates, its expiry and its refresh token's hash. Written at login and
/// refresh, read on every authenticated request.
public struct AccessTokenRecord: Sendable, Hashable {
    public var tokenHash: String
    public var userID: String
    public var deviceID: String?
    public var createdTs: Int64
    public var expiresTs: Int64?
    public var refreshTokenHash: String?
    public var refreshExpiresTs: Int64?
    /// Set on a token issued by `/refresh` until it is first used: the hash of the token it
    /// replaces, which stays valid meanwhile (spec: the old refresh token is revoked when
    /// the new access or refresh token is used, so a lost response does not log out).
    public var replacesTokenHash: String?

    public init(tokenHash: String, userID: String, deviceID: String?, createdTs: Int64 = currentTimeMillis(),
                expiresTs: Int64? = nil, refreshTokenHash: String? = nil, refreshExpiresTs: Int64? = nil,
                replacesTokenHash: String? = nil) {
        self.replacesTokenHash = replacesTokenHash
        self.tokenHash = tokenHash
        self.userID = userID
        self.deviceID = deviceID
        self.createdTs = createdTs
        self.expiresTs = expiresTs
        self.refreshTokenHash = refreshTokenHash
        self.refreshExpiresTs = refreshExpiresTs
    }
}
