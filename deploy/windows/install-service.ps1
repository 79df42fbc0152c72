<#
.SYNOPSIS
  Installs the TLS security gateway as a Windows service (WinSW), with its state under
  C:\ProgramData\TlsGateway and firewall rules for the base ports.
.DESCRIPTION
  Run in an elevated PowerShell from the repository folder:
    powershell -ExecutionPolicy Bypass -File deploy\windows\install-service.ps1 -WinSW C:\Downloads\WinSW-x64.exe -Ports 10560,10561 -BackendPorts 20560,20561
  Steps: Python venv under -InstallDir, the gateway installed into it, the data folder with
  state\ and logs\ (readable by the service account and Administrators only), the example
  configuration when none exists, `gateway check`, the service, and firewall rules: the base
  ports open, the legacy server's own ports closed to the LAN.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string]$WinSW,
    [int[]]$Ports = @(10560, 10561),
    [int[]]$BackendPorts = @(),
    [string]$InstallDir = "C:\Program Files\TlsGateway",
    [string]$DataDir = "C:\ProgramData\TlsGateway",
    [string]$Python = "py",
    [string]$PythonVersion = "-3.12"
)
$ErrorActionPreference = "Stop"
$ServiceId = "tls-gateway"
$Repo = Resolve-Path (Join-Path $PSScriptRoot "..\..")
$Venv = Join-Path $InstallDir "venv"
$VenvPython = Join-Path $Venv "Scripts\python.exe"
$Config = Join-Path $DataDir "gateway.yaml"

$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw "Run this script in an elevated PowerShell (Run as administrator)."
}

New-Item -ItemType Directory -Force -Path $InstallDir, $DataDir, (Join-Path $DataDir "state"), (Join-Path $DataDir "logs") | Out-Null

if (-not (Test-Path $VenvPython)) {
    & $Python $PythonVersion -m venv $Venv
    if ($LASTEXITCODE -ne 0) { throw "creating the venv failed: is Python 3.12 installed (py -3.12)?" }
}
& $VenvPython -m pip install --upgrade pip
& $VenvPython -m pip install $Repo
if ($LASTEXITCODE -ne 0) { throw "installing the gateway into $Venv failed" }

# The shipped files name the default folders; -InstallDir / -DataDir must reach the service too.
function Copy-WithFolders([string]$From, [string]$To) {
    $text = Get-Content -Raw -Encoding UTF8 $From
    $text = $text.Replace("C:\Program Files\TlsGateway", $InstallDir).Replace("C:\ProgramData\TlsGateway", $DataDir)
    Set-Content -Encoding UTF8 -Path $To -Value $text
}

if (-not (Test-Path $Config)) {
    Copy-WithFolders (Join-Path $PSScriptRoot "gateway.yaml") $Config
    Write-Host "Wrote the example configuration $Config - edit the bases, then run this script again."
}

# The state folder holds the users' store, the HMAC key and the local CA's private key.
icacls $DataDir /inheritance:r /grant:r "Administrators:(OI)(CI)F" "SYSTEM:(OI)(CI)F" "LOCAL SERVICE:(OI)(CI)M" | Out-Null

& $VenvPython -m gateway -c $Config check
if ($LASTEXITCODE -eq 2) { throw "$Config is not valid (see above); the service was not installed" }

Copy-Item $WinSW (Join-Path $InstallDir "$ServiceId.exe") -Force
Copy-WithFolders (Join-Path $PSScriptRoot "$ServiceId.xml") (Join-Path $InstallDir "$ServiceId.xml")
& (Join-Path $InstallDir "$ServiceId.exe") install
& (Join-Path $InstallDir "$ServiceId.exe") start

if ($Ports.Count -gt 0) {
    netsh advfirewall firewall add rule name="TLS gateway (bases)" dir=in action=allow protocol=TCP localport=($Ports -join ",")
}
if ($BackendPorts.Count -gt 0) {
    # Loopback traffic is not filtered by Windows Firewall: the gateway still reaches the legacy server.
    netsh advfirewall firewall add rule name="Legacy server (direct access blocked)" dir=in action=block protocol=TCP localport=($BackendPorts -join ",")
}

& $VenvPython -m gateway -c $Config status
Write-Host "Installed. Logs: $DataDir\logs. Check: & '$VenvPython' -m gateway -c '$Config' check"
