package systemd

import (
	"context"
	"path/filepath"
	"testing"
)

func TestReadInstalledFindsTheUnitsFile(t *testing.T) {
	root := t.TempDir()
	cfg := "/srv/mail proxy/100%/emailproxy.config"
	u, err := Render(UnitOptions{Service: testService, ConfigFile: cfg, Binary: "/usr/local/bin/orbit"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testService.ReadInstalled(root, DefaultUnitName); !IsNotInstalled(err) {
		t.Fatalf("ReadInstalled without a unit: %v, want not installed", err)
	}
	if _, err := Install(context.Background(), root, u); err != nil {
		t.Fatal(err)
	}
	got, err := testService.ReadInstalled(root, DefaultUnitName)
	if err != nil {
		t.Fatal(err)
	}
	if got.ConfigPath != cfg || got.Foreign || got.User != DefaultUser || got.StateDirectory != DefaultStateDirectory {
		t.Errorf("ReadInstalled = %+v, want config %q, user %s, state %s, not foreign", got, cfg, DefaultUser, DefaultStateDirectory)
	}
	if p := UnitPath(root, DefaultUnitName); filepath.Dir(p) != filepath.Join(root, UnitDir) {
		t.Errorf("UnitPath = %s", p)
	}
}

func TestInstalledConfigWithoutAUnit(t *testing.T) {
	if p, ok := InstalledConfig("orbit-test-no-such-unit-7f3a.service"); ok {
		t.Errorf("InstalledConfig of a unit that does not exist = %q, true", p)
	}
}
