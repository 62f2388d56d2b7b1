/// This build's version, as `switchboard --version` and the admin API's info report it.
public enum SwitchboardVersion {
    public static let current = "0.1.0"
}
