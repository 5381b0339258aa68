package config

// The failed-login back-off settings of [emailproxy] (orbit only; the
// token layer's GuardOptions say what each does) take a positive whole
// number.
func init() {
	for _, k := range []string{"failed_login_free_attempts", "failed_login_max_delay", "failed_login_queue"} {
		globalChecks[k] = checkCount
	}
}
