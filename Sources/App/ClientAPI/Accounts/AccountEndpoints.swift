/// Account endpoints: registration, login and sessions, the account itself,
/// devices, profiles, account data, presence, filters, capabilities and the user directory.
enum AccountEndpoints {
    static func register(_ routes: inout RouteBuilder) {
        Registration.register(&routes)
        Login.register(&routes)
        Devices.register(&routes)
        Profiles.register(&routes)
        AccountData.register(&routes)
        AccountManagement.register(&routes)
        Capabilities.register(&routes)
        Presence.register(&routes)
        Filters.register(&routes)
        UserDirectory.register(&routes)
        SharedSecretRegistration.register(&routes)
    }
}
